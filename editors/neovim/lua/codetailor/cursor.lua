--- Tell the server where the cursor is (`codetailor/cursor`), so that it can
--- prefill the prompt window there before the first request, as llama.vim
--- warms its cache on entering a buffer. The server decides whether the
--- window is new; this module only reports, debounced.
local server = require("codetailor.server")
local util = require("codetailor.util")

local M = {}

M.DELAY_MS = 150
local ticks = {} ---@type table<integer, integer>

---@param buf integer
local function send(buf)
  if buf ~= vim.api.nvim_get_current_buf() then
    return
  end
  local client = server.client()
  if not client or not (client.attached_buffers or {})[buf] then
    return
  end
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  util.call(client, "notify", "codetailor/cursor", params)
end

--- Report the cursor of `buf` after it rests for DELAY_MS.
---@param buf integer
function M.schedule(buf)
  ticks[buf] = (ticks[buf] or 0) + 1
  local tick = ticks[buf]
  vim.defer_fn(function()
    if ticks[buf] == tick then
      send(buf)
    end
  end, M.DELAY_MS)
end

--- Follow the cursor in `buf`: entering it, moving in it, starting to type.
---@param buf integer
function M.attach(buf)
  local group = vim.api.nvim_create_augroup("codetailor.cursor." .. buf, { clear = true })
  vim.api.nvim_create_autocmd({ "BufEnter", "CursorMoved", "InsertEnter" }, {
    group = group,
    buffer = buf,
    callback = function()
      M.schedule(buf)
    end,
  })
  vim.api.nvim_create_autocmd("BufUnload", {
    group = group,
    buffer = buf,
    callback = function()
      ticks[buf] = nil
      pcall(vim.api.nvim_del_augroup_by_id, group)
    end,
  })
  M.schedule(buf) -- attached while in the buffer: BufEnter has already fired
end

return M
