-- Delete these messages, all or none; with claim ids each must be held by one of them
-- (rules.message_not_held). ARGV: now, check ('1' or '0'), n, claim ids (n), ids...
-- Returns {0} when done, {1, record} for the first message that may not go.
local now, check, n = tonumber(ARGV[1]), ARGV[2] == '1', tonumber(ARGV[3])
local allowed = {}
for i = 4, 3 + n do
  allowed[ARGV[i]] = true
end
local doomed = {}
for i = 4 + n, #ARGV do
  local m, raw = load(ARGV[i])
  if m and live(m, now) then
    if check and not (claimed(m, now) and allowed[m[F_CLAIM]]) then
      return {1, raw}
    end
    doomed[#doomed + 1] = ARGV[i]
  end
end
remove_all(doomed)
return {0}
