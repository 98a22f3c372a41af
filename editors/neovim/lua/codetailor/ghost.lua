--- Ghost text for Neovim 0.10/0.11 (and on request for 0.12+): asks the server for
--- `textDocument/inlineCompletion` after typing (debounced, the previous request
--- cancelled) and shows the answer as an extmark at the cursor.
local config = require("codetailor.config")
local server = require("codetailor.server")
local util = require("codetailor.util")

local M = {}

M.ns = vim.api.nvim_create_namespace("codetailor.ghost")
M.hl = "CodetailorGhostText"

---@class codetailor.Ghost
---@field timer? uv.uv_timer_t
---@field generation integer Bumped by every cancel: a debounce timer that fired late checks it
---@field request? { client_id: integer, id: integer }
---@field client_id? integer
---@field items lsp.InlineCompletionItem[]
---@field index integer
---@field row integer 0-based row of the text's start
---@field col integer byte column of the text's start
---@field text? string What is left of the completion to show
---@field ignore_tick? integer Our own insertion: not a reason to ask again
---@field tick? integer The buffer's changedtick when the text was last drawn
---@type table<integer, codetailor.Ghost>
local ghosts = {}

---@param buf integer
---@return codetailor.Ghost
local function ghost(buf)
  ghosts[buf] = ghosts[buf] or { items = {}, index = 1, row = 0, col = 0, generation = 0 }
  return ghosts[buf]
end

---@param buf integer
local function cancel(buf)
  util.cancel_pending(ghost(buf))
end

---@param buf integer
local function render(buf)
  vim.api.nvim_buf_clear_namespace(buf, M.ns, 0, -1)
  local g = ghost(buf)
  g.tick = vim.api.nvim_buf_get_changedtick(buf)
  if not g.text or g.text == "" then
    return
  end
  local lines = vim.split(g.text, "\n", { plain = true })
  local virt_lines = {}
  for i = 2, #lines do
    virt_lines[#virt_lines + 1] = { { lines[i], M.hl } }
  end
  vim.api.nvim_buf_set_extmark(buf, M.ns, g.row, g.col, {
    virt_text = lines[1] ~= "" and { { lines[1], M.hl } } or nil,
    virt_text_pos = "inline",
    virt_lines = #virt_lines > 0 and virt_lines or nil,
    hl_mode = "combine",
  })
end

--- Hide the ghost text and forget it (pending requests are cancelled).
---@param buf integer
function M.clear(buf)
  cancel(buf)
  local g = ghost(buf)
  g.text, g.items, g.index = nil, {}, 1
  if vim.api.nvim_buf_is_valid(buf) then
    vim.api.nvim_buf_clear_namespace(buf, M.ns, 0, -1)
  end
end

---@param buf integer
function M.visible(buf)
  local g = ghosts[buf]
  return g ~= nil and g.text ~= nil and g.text ~= ""
end

--- Tell the server the user hid the shown completion untaken (`codetailor/dismissed`,
--- for the local feedback log): `reason` is "dismiss" (the dismiss key), "insert-leave"
--- (<Esc>, leaving Insert mode) or "cursor-moved" (the cursor left its place).
---@param buf integer
---@param reason string
local function report_dismissed(buf, reason)
  local g = ghosts[buf]
  if not M.visible(buf) or not g.client_id then
    return
  end
  local command = g.items[g.index] and g.items[g.index].command
  local id = command and command.arguments and command.arguments[2]
  local client = vim.lsp.get_client_by_id(g.client_id)
  if type(id) == "string" and client then
    util.call(client, "notify", "codetailor/dismissed", { id = id, reason = reason })
  end
end

--- The text still to insert for `item` at the cursor: its insertText, less what
--- the user already typed when the item's range starts before the cursor.
---@param buf integer
---@param item lsp.InlineCompletionItem
---@param row integer
---@param col integer
---@return string?
local function text_at_cursor(buf, item, row, col)
  local text = type(item.insertText) == "string" and item.insertText or item.insertText.value
  local range = item.range
  if range and range.start.line == row and range.start.character < col then
    -- only UTF-8/ASCII-safe when the range is on the cursor's line; good enough for a prefix
    local typed = vim.api.nvim_buf_get_lines(buf, row, row + 1, true)[1]:sub(range.start.character + 1, col)
    if text:sub(1, #typed) ~= typed then
      return nil
    end
    text = text:sub(#typed + 1)
  end
  return text
end

---@param buf integer
---@param index integer
local function show(buf, index)
  local g = ghost(buf)
  local row, col = util.cursor()
  local n = #g.items
  if n == 0 then
    return
  end
  g.index = (index - 1) % n + 1
  g.row, g.col = row, col
  g.text = text_at_cursor(buf, g.items[g.index], row, col)
  render(buf)
end

--- Ask the server now. `kind`: 1 invoked by the user, 2 automatic.
---@param buf integer
---@param kind? integer
function M.request(buf, kind)
  cancel(buf)
  if buf ~= vim.api.nvim_get_current_buf() or not vim.api.nvim_get_mode().mode:match("^i") then
    return
  end
  if not config.options.settings.enable then
    return
  end
  local client = vim.lsp.get_clients({ bufnr = buf, name = server.NAME })[1]
  if not client then
    return
  end
  local tick = vim.api.nvim_buf_get_changedtick(buf)
  local row, col = util.cursor()
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  params.context = { triggerKind = kind or 2 }
  local ok, id = util.call(client, "request", "textDocument/inlineCompletion", params, function(err, result)
    local g = ghost(buf)
    if g.request and g.request.id == id then
      g.request = nil
    end
    if err then
      if err.code ~= -32800 then -- RequestCancelled is ours
        util.notify_once("inline completion failed: " .. (err.message or vim.inspect(err)))
      end
      return
    end
    if not vim.api.nvim_buf_is_valid(buf) or vim.api.nvim_buf_get_changedtick(buf) ~= tick then
      return -- the text changed since: a newer request is on its way
    end
    local r, c = util.cursor()
    if buf ~= vim.api.nvim_get_current_buf() or r ~= row or c ~= col
      or not vim.api.nvim_get_mode().mode:match("^i") then
      return
    end
    local items = {}
    for _, item in ipairs(result and (result.items or result) or {}) do
      local text = type(item.insertText) == "string" and item.insertText or (item.insertText or {}).value
      if text and text ~= "" then
        items[#items + 1] = item
      end
    end
    g.items, g.client_id = items, client.id
    show(buf, 1)
  end, buf)
  if ok then
    ghost(buf).request = { client_id = client.id, id = id }
  end
end

--- After a change in insert mode: keep the ghost text if the user typed what it
--- shows, else hide it and ask again once typing pauses.
---@param buf integer
function M.on_change(buf)
  local g = ghost(buf)
  local tick = vim.api.nvim_buf_get_changedtick(buf)
  if g.ignore_tick == tick then
    return
  end
  local row, col = util.cursor()
  if g.text and row == g.row and col > g.col then
    local typed = vim.api.nvim_buf_get_lines(buf, row, row + 1, true)[1]:sub(g.col + 1, col)
    if g.text:sub(1, #typed) == typed and not typed:find("\n", 1, true) then
      g.text, g.col = g.text:sub(#typed + 1), col
      if g.text ~= "" then
        cancel(buf)
        return render(buf)
      end
      if g.client_id then -- typed all of it: that is an acceptance too
        server.execute(g.client_id, g.items[g.index] and g.items[g.index].command)
      end
    end
  end
  M.clear(buf)
  if not config.options.settings.enable then
    return
  end
  local generation = g.generation
  g.timer = vim.defer_fn(function()
    if g.generation == generation then -- not cancelled since
      g.timer = nil
      M.request(buf, 2)
    end
  end, config.options.debounce_ms)
end

--- Insert the whole completion; false when there is none.
---@param buf integer
function M.accept(buf)
  local g = ghosts[buf]
  if not M.visible(buf) then
    return false
  end
  local item, client_id = g.items[g.index], g.client_id
  util.insert(buf, g.row, g.col, g.text)
  g.ignore_tick = vim.api.nvim_buf_get_changedtick(buf)
  M.clear(buf)
  if client_id and item then
    server.execute(client_id, item.command)
  end
  return true
end

--- Insert the completion's next line and keep showing the rest; false when there is none.
---@param buf integer
function M.accept_line(buf)
  local g = ghosts[buf]
  if not M.visible(buf) then
    return false
  end
  local line, rest = util.next_line(g.text)
  if rest == "" then
    return M.accept(buf)
  end
  util.insert(buf, g.row, g.col, line)
  g.ignore_tick = vim.api.nvim_buf_get_changedtick(buf)
  g.row, g.col = util.cursor()
  g.text = rest
  render(buf)
  return true
end

--- Hide the completion; false when there was none.
---@param buf integer
function M.dismiss(buf)
  local shown = M.visible(buf) or ghost(buf).request ~= nil or ghost(buf).timer ~= nil
  report_dismissed(buf, "dismiss")
  M.clear(buf)
  return shown
end

--- Show the next completion, or ask the server again when it gave only one.
---@param buf integer
function M.next(buf)
  local g = ghost(buf)
  if #g.items > 1 and M.visible(buf) then
    show(buf, g.index + 1)
  else
    M.clear(buf)
    M.request(buf, 1)
  end
  return true
end

--- Follow typing in `buf`.
---@param buf integer
function M.attach(buf)
  local group = vim.api.nvim_create_augroup("codetailor.ghost." .. buf, { clear = true })
  vim.api.nvim_create_autocmd({ "TextChangedI", "TextChangedP" }, {
    group = group,
    buffer = buf,
    callback = function()
      M.on_change(buf)
    end,
  })
  vim.api.nvim_create_autocmd("CursorMovedI", {
    group = group,
    buffer = buf,
    callback = function()
      -- Moving without typing hides the text; typing is TextChangedI's business.
      local g = ghosts[buf]
      if not g or not g.text or g.tick ~= vim.api.nvim_buf_get_changedtick(buf) then
        return
      end
      local row, col = util.cursor()
      if row ~= g.row or col ~= g.col then
        report_dismissed(buf, "cursor-moved")
        M.clear(buf)
      end
    end,
  })
  vim.api.nvim_create_autocmd({ "InsertLeave", "BufLeave" }, {
    group = group,
    buffer = buf,
    callback = function(ev)
      report_dismissed(buf, ev.event == "InsertLeave" and "insert-leave" or "buffer-left")
      M.clear(buf)
    end,
  })
  vim.api.nvim_create_autocmd({ "BufUnload", "LspDetach" }, {
    group = group,
    buffer = buf,
    callback = function(ev)
      if ev.event == "LspDetach" then
        local client = vim.lsp.get_client_by_id(ev.data.client_id)
        if not client or client.name ~= server.NAME then
          return
        end
      end
      M.clear(buf)
      pcall(vim.api.nvim_del_augroup_by_id, group)
      ghosts[buf] = nil
    end,
  })
end

return M
