--- `:Codetailor finetune [DIR]`: run `codetailor finetune` on the project, show
--- its progress, and switch the server to the new adapter when it is done.
local config = require("codetailor.config")
local server = require("codetailor.server")

local M = {}

--- The last progress report in a chunk of a tqdm bar's output.
---@param chunk string
---@return integer? percentage, string? message
function M.parse_progress(chunk)
  local last_pct, last_msg
  for piece in chunk:gmatch("[^\r\n]+") do
    local label, pct, rest = piece:match("^%s*(.-)%s*(%d+)%%|[^|]*|%s*(.*)$")
    if pct then
      label = label:gsub(":$", "")
      last_pct, last_msg = tonumber(pct), (label ~= "" and (label .. ": ") or "") .. rest
    end
  end
  return last_pct, last_msg
end

---@type vim.SystemObj?
M.job = nil

---@param out_dir? string
function M.run(out_dir)
  if M.job then
    vim.notify("codetailor: a fine-tuning run is already going", vim.log.levels.WARN)
    return
  end
  local opts = config.options
  local repo = vim.fs.root(0, { ".git" }) or vim.fn.getcwd()
  local name = vim.fs.basename(repo):gsub("[^%w._-]+", "-")
  out_dir = out_dir and (vim.fn.fnamemodify(out_dir, ":p"):gsub("/$", ""))
    or ("%s/%s-%s"):format(opts.adapter_dir, name, os.date("%Y%m%d-%H%M%S"))
  local cmd = config.cli_prefix(opts.cmd)
  vim.list_extend(cmd, { "finetune", repo, "--out", out_dir, "--json" })
  if opts.settings.model then
    vim.list_extend(cmd, { "--model", opts.settings.model })
  end
  vim.notify(("codetailor: fine-tuning on %s (%s)"):format(repo, table.concat(cmd, " ")), vim.log.levels.INFO)
  local stderr, shown = {}, -10
  local ok, job = pcall(vim.system, cmd, {
    cwd = repo,
    text = true,
    stderr = function(_, data)
      if not data then
        return
      end
      table.insert(stderr, data)
      local pct, msg = M.parse_progress(data)
      if pct and pct >= shown + 10 then -- every 10%, not every redraw
        shown = pct
        vim.schedule(function()
          vim.api.nvim_echo({ { ("codetailor: fine-tuning %d%% %s"):format(pct, msg or "") } }, false, {})
        end)
      end
    end,
  }, function(result)
    M.job = nil
    vim.schedule(function()
      M.done(result, table.concat(stderr), out_dir)
    end)
  end)
  if not ok then
    vim.notify(("codetailor: cannot run %s: %s"):format(cmd[1], job), vim.log.levels.ERROR)
    return
  end
  M.job = job
end

---@param result vim.SystemCompleted
---@param stderr string
---@param out_dir string
function M.done(result, stderr, out_dir)
  if result.code ~= 0 then
    local last = ""
    for line in stderr:gmatch("[^\r\n]+") do
      if not line:find("%d+%%|") then
        last = line
      end
    end
    vim.notify(("codetailor: fine-tuning failed (status %d): %s"):format(result.code, last), vim.log.levels.ERROR)
    return
  end
  local summary = {}
  for line in (result.stdout or ""):gmatch("[^\n]+") do
    local ok, value = pcall(vim.json.decode, line)
    if ok and type(value) == "table" then
      summary = value
    end
  end
  local adapter = type(summary.out) == "string" and summary.out or out_dir
  config.options.settings.adapter = adapter
  server.send_settings()
  vim.notify(("codetailor: fine-tuned; now using the adapter %s"):format(adapter), vim.log.levels.INFO)
end

return M
