// DOM helpers. Everything on screen is built with `h`, which puts text in
// text nodes only: no string is ever parsed as markup in the console, so a
// plugin's name, an upstream's error or a record's title shows literally.

const URL_ATTRS = new Set(['href', 'action', 'formaction']);

function safeUrl(value) {
  const text = String(value);
  // Relative links to the console and http(s) links only.
  if (text.startsWith('#') || text.startsWith('/')) return text;
  try {
    const url = new URL(text, window.location.href);
    if (url.protocol === 'http:' || url.protocol === 'https:') return url.href;
  } catch (_) {
    // fall through
  }
  return '#';
}

// h('button', {class: 'secondary', onclick: fn}, 'Save')
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'class') {
      el.className = value;
    } else if (key === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (key === 'value' || key === 'checked' || key === 'selected') {
      el[key] = value;
    } else if (key.startsWith('on') || key === 'style' || key.startsWith('src')) {
      throw new Error(`h: ${key} is not allowed`);
    } else if (URL_ATTRS.has(key)) {
      el.setAttribute(key, safeUrl(value));
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function replace(el, ...children) {
  clear(el);
  append(el, children);
  return el;
}

let fieldSeq = 0;

// A labelled form field; `control` is an input, select or textarea.
export function field(labelText, control, hint) {
  if (!control.id) control.id = `f${++fieldSeq}`;
  const hintEl = hint ? h('div', { class: 'hint', id: `${control.id}-hint` }, hint) : null;
  if (hintEl) control.setAttribute('aria-describedby', hintEl.id);
  if (control.type === 'checkbox') {
    return h('div', { class: 'field check' }, control, h('label', { for: control.id }, labelText), hintEl);
  }
  return h('div', { class: 'field' }, h('label', { for: control.id }, labelText), control, hintEl);
}

export function select(name, options, current) {
  const el = h('select', { name }, options.map(([value, label]) => h('option', { value }, label)));
  if (current !== undefined && current !== null) el.value = current;
  return el;
}

// A definition list of [term, value] pairs; values may be nodes.
export function kv(pairs) {
  return h('dl', { class: 'kv' }, pairs.filter(Boolean).flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v ?? '—')]));
}

export function table(headers, rows, opts = {}) {
  return h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      { class: opts.class },
      h('thead', {}, h('tr', {}, headers.map((x) => (Array.isArray(x) ? h('th', { scope: 'col', class: x[1] }, x[0]) : h('th', { scope: 'col' }, x))))),
      h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: headers.length, class: 'muted' }, opts.empty || 'Nothing yet.'))),
    ),
  );
}

export function badge(text) {
  return h('span', { class: `badge ${text}` }, text);
}

// An inline confirmation instead of window.confirm: the question, a
// danger button that runs `action`, and a cancel button.
export function confirmInline(container, question, label, action) {
  const box = h(
    'div',
    { class: 'confirm', role: 'alertdialog', 'aria-label': question },
    h('p', {}, question),
    h(
      'div',
      { class: 'actions' },
      h('button', { type: 'button', class: 'danger', 'data-confirm': 'yes', onclick: async () => { box.remove(); await action(); } }, label),
      h('button', { type: 'button', class: 'secondary', onclick: () => box.remove() }, 'Cancel'),
    ),
  );
  container.appendChild(box);
  box.querySelector('button.secondary').focus();
}

// Previous/next paging over a list of `items` shown `size` at a time.
export function paged(items, size, renderRows, headers, opts = {}) {
  const wrap = h('div', {});
  let page = 0;
  const pages = Math.max(1, Math.ceil(items.length / size));
  const draw = () => {
    const rows = renderRows(items.slice(page * size, (page + 1) * size));
    replace(
      wrap,
      table(headers, rows, opts),
      items.length > size
        ? h(
            'div',
            { class: 'pager' },
            h('button', { type: 'button', class: 'secondary', disabled: page === 0, onclick: () => { page -= 1; draw(); } }, 'Previous'),
            h('span', {}, `Page ${page + 1} of ${pages} (${items.length})`),
            h('button', { type: 'button', class: 'secondary', disabled: page + 1 >= pages, onclick: () => { page += 1; draw(); } }, 'Next'),
          )
        : null,
    );
  };
  draw();
  return wrap;
}

export function shortHash(hex) {
  return hex ? `${hex.slice(0, 12)}…` : '';
}

export function when(rfc3339) {
  if (!rfc3339) return '—';
  const d = new Date(rfc3339);
  return Number.isNaN(d.getTime()) ? rfc3339 : d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}
