--- Next-edit suggestions: after an edit (Insert or Normal mode, debounced) ask the
--- server for the edit the user will make next near the cursor
--- (`textDocument/copilotInlineEdit`, as the Copilot language server names it) and
--- draw it with extmarks: the text it removes struck through, the text it inserts
--- inline after it, new lines below. <Tab> jumps to it, <Tab> again applies it; the
--- cursor never moves and no key is taken unless an edit is shown. A few cursor
--- moves, an edit, leaving the buffer or the dismiss key clear it.
local config = require("codetailor.config")
local server = require("codetailor.server")
local util = require("codetailor.util")

local M = {}

M.ns = vim.api.nvim_create_namespace("codetailor.next_edit")
M.hl_delete = "CodetailorNextEditDelete"
M.hl_insert = "CodetailorNextEditInsert"
M.METHOD = "textDocument/copilotInlineEdit"
M.DID_SHOW = "textDocument/didShowInlineEdit"

---@class codetailor.NextEdit
---@field timer? uv.uv_timer_t
---@field generation integer Bumped by every cancel: a late debounce timer checks it
---@field request? { client_id: integer, id: integer }
---@field edit? table The shown edit, as the server sent it
---@field client_id? integer
---@field range? { srow: integer, scol: integer, erow: integer, ecol: integer } 0-based, byte columns
---@field tick? integer The buffer's changedtick when it was drawn
---@field moves integer Cursor moves since it was drawn
---@field jumping boolean Our own jump: not a move that counts
---@type table<integer, codetailor.NextEdit>
local states = {}
--- Clients whose server answered "method not found" (an older one): not asked again.
---@type table<integer, boolean>
local unsupported = {}

---@param buf integer
---@return codetailor.NextEdit
local function state(buf)
  states[buf] = states[buf] or { generation = 0, moves = 0, jumping = false }
  return states[buf]
end

--- The highlight groups, unless the user set them: removed text struck through (in
--- its own colours), inserted text as the theme shows added lines.
function M.define_highlights()
  vim.api.nvim_set_hl(0, M.hl_delete, { strikethrough = true, default = true })
  vim.api.nvim_set_hl(0, M.hl_insert, { link = "DiffAdd", default = true })
end

---@param buf integer
local function cancel(buf)
  util.cancel_pending(state(buf))
end

--- Hide the shown edit and forget it (a pending request is cancelled).
---@param buf integer
function M.clear(buf)
  cancel(buf)
  local s = state(buf)
  s.edit, s.range, s.client_id = nil, nil, nil
  if vim.api.nvim_buf_is_valid(buf) then
    vim.api.nvim_buf_clear_namespace(buf, M.ns, 0, -1)
  end
end

--- Whether an edit is shown in `buf`.
---@param buf integer
function M.visible(buf)
  local s = states[buf]
  return s ~= nil and s.edit ~= nil
end

--- LSP position `pos` as a 0-based (row, byte column) in `buf`, nil when it lies
--- outside the text. The position after the last line's newline (line = line
--- count, character 0: where an edit that ends the document ends) is drawn at the
--- last line's end.
---@param buf integer
---@param pos { line: integer, character: integer }
---@param encoding string
---@return integer? row, integer? col
local function buf_pos(buf, pos, encoding)
  local count = vim.api.nvim_buf_line_count(buf)
  if pos.line == count and pos.character == 0 then
    return count - 1, #vim.api.nvim_buf_get_lines(buf, count - 1, count, true)[1]
  end
  local line = vim.api.nvim_buf_get_lines(buf, pos.line, pos.line + 1, false)[1]
  if line == nil then
    return nil
  end
  if encoding == "utf-8" then
    return pos.line, pos.character <= #line and pos.character or nil
  end
  local ok, col = pcall(vim.str_byteindex, line, encoding, pos.character, false)
  if not ok then -- Neovim 0.10: str_byteindex(line, index, use_utf16)
    ok, col = pcall(vim.str_byteindex, line, pos.character, encoding == "utf-16")
  end
  return pos.line, ok and col or nil
end

--- Draw `s.edit`: old text struck, the new text's first line inline after it, its
--- other lines as virtual lines below. A whole-line edit (ending at column 0 with a
--- newline) shows its new lines above the line it ends on, where they will go.
---@param buf integer
---@param s codetailor.NextEdit
local function render(buf, s)
  vim.api.nvim_buf_clear_namespace(buf, M.ns, 0, -1)
  local r = s.range
  local sign = { sign_text = "»", sign_hl_group = M.hl_insert }
  local strike = r.srow ~= r.erow or r.scol ~= r.ecol
  vim.api.nvim_buf_set_extmark(buf, M.ns, r.srow, r.scol, vim.tbl_extend("force", sign, {
    end_row = strike and r.erow or nil,
    end_col = strike and r.ecol or nil,
    hl_group = strike and M.hl_delete or nil,
    hl_mode = "combine",
  }))
  local text = s.edit.text or ""
  if text == "" then
    return
  end
  local lines = vim.split(text, "\n", { plain = true })
  local lsp = s.edit.range
  if lsp.start.character == 0 and lsp["end"].character == 0 and #lines > 1 and lines[#lines] == "" then
    table.remove(lines) -- whole lines: shown as lines where they will be
    local virt = vim.tbl_map(function(l)
      return { { l, M.hl_insert } }
    end, lines)
    local last = vim.api.nvim_buf_line_count(buf)
    local above = lsp["end"].line < last
    vim.api.nvim_buf_set_extmark(buf, M.ns, above and lsp["end"].line or last - 1, 0, {
      virt_lines = virt,
      virt_lines_above = above,
    })
    return
  end
  local rest = {}
  for i = 2, #lines do
    rest[#rest + 1] = { { lines[i], M.hl_insert } }
  end
  vim.api.nvim_buf_set_extmark(buf, M.ns, r.erow, r.ecol, {
    virt_text = lines[1] ~= "" and { { lines[1], M.hl_insert } } or nil,
    virt_text_pos = "inline",
    virt_lines = #rest > 0 and rest or nil,
    hl_mode = "combine",
  })
end

--- Show `edit` (from `client`) in `buf`, if its range lies in the text; tell the server.
---@param buf integer
---@param client vim.lsp.Client
---@param edit table
local function show(buf, client, edit)
  local srow, scol = buf_pos(buf, edit.range.start, client.offset_encoding)
  local erow, ecol = buf_pos(buf, edit.range["end"], client.offset_encoding)
  if type(edit.text) ~= "string" or not scol or not ecol then
    return
  end
  local s = state(buf)
  s.edit, s.client_id, s.moves = edit, client.id, 0
  s.range = { srow = srow, scol = scol, erow = erow, ecol = ecol }
  s.tick = vim.api.nvim_buf_get_changedtick(buf)
  render(buf, s)
  util.call(client, "notify", M.DID_SHOW, { item = edit })
end

---@param buf integer
local function wanted(buf)
  local settings = config.options.settings
  return settings.enable and settings.next_edit and buf == vim.api.nvim_get_current_buf()
end

--- Ask the server now for the next edit at the cursor of `buf`.
---@param buf integer
function M.request(buf)
  cancel(buf)
  if not wanted(buf) then
    return
  end
  local client = vim.lsp.get_clients({ bufnr = buf, name = server.NAME })[1]
  if not client or unsupported[client.id] then
    return
  end
  local tick = vim.api.nvim_buf_get_changedtick(buf)
  local version = vim.lsp.util.buf_versions[buf]
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  params.textDocument.version = version
  local ok, id = util.call(client, "request", M.METHOD, params, function(err, result)
    local s = state(buf)
    if s.request and s.request.id == id then
      s.request = nil
    end
    if err then
      if err.code == -32601 then -- an older server
        unsupported[client.id] = true
      elseif err.code ~= -32800 then -- RequestCancelled is ours
        util.notify_once("next edit failed: " .. (err.message or vim.inspect(err)))
      end
      return
    end
    if not vim.api.nvim_buf_is_valid(buf) or vim.api.nvim_buf_get_changedtick(buf) ~= tick
      or not wanted(buf) then
      return -- the text changed since: a newer request is on its way
    end
    for _, edit in ipairs(result and result.edits or {}) do
      local doc = edit.textDocument or {}
      if doc.version == version and edit.range then -- an answer for another version is stale
        return show(buf, client, edit)
      end
    end
  end, buf)
  if ok then
    state(buf).request = { client_id = client.id, id = id }
  end
end

--- After a change: hide what is shown (its place may have moved) and ask again once
--- the edits pause.
---@param buf integer
function M.on_change(buf)
  M.clear(buf)
  if not wanted(buf) then
    return
  end
  local s = state(buf)
  local generation = s.generation
  s.timer = vim.defer_fn(function()
    if s.generation == generation then
      s.timer = nil
      M.request(buf)
    end
  end, config.options.settings.next_edit_debounce_ms)
end

--- Whether the cursor stands on the edit's lines (Tab applies) rather than away (Tab jumps).
---@param s codetailor.NextEdit
local function at_edit(s)
  local row = util.cursor()
  return row >= s.range.srow and row <= s.range.erow
end

--- Apply the shown edit and run its command (the server counts the acceptance).
---@param buf integer
local function apply(buf)
  local s = state(buf)
  local edit, range, client = s.edit, s.range, vim.lsp.get_client_by_id(s.client_id)
  M.clear(buf)
  if not client then
    return
  end
  vim.lsp.util.apply_text_edits({ { range = edit.range, newText = edit.text } }, buf, client.offset_encoding)
  -- The cursor goes to the end of what was inserted, as after typing it.
  local lines = vim.split(edit.text, "\n", { plain = true })
  local row = range.srow + #lines - 1
  local col = (#lines == 1 and range.scol or 0) + #lines[#lines]
  local win = vim.fn.bufwinid(buf)
  if win ~= -1 and row < vim.api.nvim_buf_line_count(buf) then
    state(buf).jumping = true
    pcall(vim.api.nvim_win_set_cursor, win, { row + 1, col })
  end
  server.execute(client.id, edit.command)
end

--- <Tab>: jump to the shown edit, or apply it when the cursor is on it. False when
--- none is shown (the key then does its usual job).
---@param buf integer
---@return boolean
function M.tab(buf)
  local s = states[buf]
  if not M.visible(buf) then
    return false
  end
  if at_edit(s) then
    apply(buf)
  else
    s.jumping = true
    vim.api.nvim_win_set_cursor(0, { s.range.srow + 1, s.range.scol })
  end
  return true
end

--- Tell the server the user hid the shown edit untaken (`codetailor/dismissed`, for
--- the local feedback log), then hide it. `reason`: "dismiss" (the dismiss key),
--- "cursor-moved" (moves elsewhere) or "buffer-left".
---@param buf integer
---@param reason string
local function dismissed(buf, reason)
  local s = states[buf]
  local command = s and s.edit and s.edit.command
  local id = command and command.arguments and command.arguments[1]
  local client = s and s.client_id and vim.lsp.get_client_by_id(s.client_id)
  if type(id) == "string" and client then
    util.call(client, "notify", "codetailor/dismissed", { id = id, reason = reason })
  end
  M.clear(buf)
end

--- Hide the shown edit untaken; false when none was shown.
---@param buf integer
function M.dismiss(buf)
  local shown = M.visible(buf)
  dismissed(buf, "dismiss")
  return shown
end

---@param buf integer
local function on_cursor(buf)
  local s = states[buf]
  if not s or not s.edit then
    return
  end
  if s.jumping then
    s.jumping = false
    return
  end
  s.moves = s.moves + 1
  if s.moves >= config.options.next_edit.clear_after_moves then
    dismissed(buf, "cursor-moved")
  end
end

--- Follow edits and cursor moves in `buf`.
---@param buf integer
function M.attach(buf)
  local group = vim.api.nvim_create_augroup("codetailor.next_edit." .. buf, { clear = true })
  vim.api.nvim_create_autocmd({ "TextChanged", "TextChangedI", "TextChangedP" }, {
    group = group,
    buffer = buf,
    callback = function()
      M.on_change(buf)
    end,
  })
  vim.api.nvim_create_autocmd({ "CursorMoved", "CursorMovedI" }, {
    group = group,
    buffer = buf,
    callback = function()
      on_cursor(buf)
    end,
  })
  vim.api.nvim_create_autocmd({ "BufLeave", "BufUnload", "LspDetach" }, {
    group = group,
    buffer = buf,
    callback = function(ev)
      if ev.event == "LspDetach" then
        local client = vim.lsp.get_client_by_id(ev.data.client_id)
        if not client or client.name ~= server.NAME then
          return
        end
      end
      if ev.event == "BufLeave" and M.visible(buf) then
        dismissed(buf, "buffer-left")
      end
      M.clear(buf)
      if ev.event ~= "BufLeave" then
        pcall(vim.api.nvim_del_augroup_by_id, group)
        states[buf] = nil
      end
    end,
  })
end

return M
