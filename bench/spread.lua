-- Spreads wrk's load over many URLs: each request takes one of the paths given after `--`
-- on wrk's command line (bench/load.py passes one per catalogue symbol), at random, so no
-- two concurrent requests are alike often enough for caches or collapsing to matter.
local paths = {}

function init(args)
  for i = 1, #args do
    paths[i] = args[i]
  end
end

function request()
  return wrk.format(nil, paths[math.random(#paths)])
end
