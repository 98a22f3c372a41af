--- `:Codetailor status|toggle|enable|disable|restart|finetune [DIR]|log`.
local server = require("codetailor.server")

local M = {}

--- Lines for people from `codetailor.status`'s answer.
---@param status table
---@return string[]
function M.format_status(status)
  local counts = status.counts or {}
  local shown, accepted = counts.shown or 0, counts.accepted or 0
  local function show(v)
    return (v == nil or v == vim.NIL) and "-" or tostring(v)
  end
  local lines = {
    ("state:    %s%s"):format(show(status.state),
      (status.error and status.error ~= vim.NIL) and (" (" .. status.error .. ")") or ""),
    "model:    " .. show(status.model),
    "adapter:  " .. show(status.adapter),
    ("device:   %s / %s"):format(show(status.device), show(status.dtype)),
    ("accepted: %d of %d shown"):format(accepted, shown),
  }
  if type(status.cache) == "table" then
    table.insert(lines, "cache:    " .. vim.json.encode(status.cache))
  end
  return lines
end

local SUBCOMMANDS = {
  status = function()
    server.status(function(err, status)
      if err then
        vim.notify("codetailor: " .. err, vim.log.levels.ERROR)
      else
        vim.notify("codetailor:\n" .. table.concat(M.format_status(status), "\n"), vim.log.levels.INFO)
      end
    end)
  end,
  toggle = function()
    require("codetailor").toggle()
  end,
  enable = function()
    require("codetailor").toggle(true)
  end,
  disable = function()
    require("codetailor").toggle(false)
  end,
  restart = function()
    server.restart()
  end,
  finetune = function(args)
    require("codetailor.finetune").run(args[1])
  end,
  log = function()
    vim.cmd.tabnew(vim.lsp.get_log_path())
  end,
}

function M.create()
  vim.api.nvim_create_user_command("Codetailor", function(cmd)
    local name = cmd.fargs[1] or "status"
    local fn = SUBCOMMANDS[name]
    if not fn then
      vim.notify(("codetailor: unknown subcommand %q; try one of: %s"):format(
        name, table.concat(vim.tbl_keys(SUBCOMMANDS), ", ")), vim.log.levels.ERROR)
      return
    end
    fn(vim.list_slice(cmd.fargs, 2))
  end, {
    nargs = "*",
    desc = "Codetailor: status, toggle, enable, disable, restart, finetune [DIR], log",
    complete = function(arg, line)
      if #vim.split(line, "%s+", { trimempty = true }) > 2 or (line:match("%s$") and line:match("%S+%s+%S+")) then
        return vim.fn.getcompletion(arg, "dir")
      end
      local names = vim.tbl_keys(SUBCOMMANDS)
      table.sort(names)
      return vim.tbl_filter(function(n)
        return n:find(arg, 1, true) == 1
      end, names)
    end,
  })
end

return M
