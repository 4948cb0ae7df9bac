-- Forget a delivery. ARGV: n.
forget(ARGV[1])
return 1
