-- Forget deliveries (gone ones are passed over). ARGV: n, ...
for _, n in ipairs(ARGV) do
  forget(n)
end
return 1
