// Forms generated from what the server describes: an operation's input
// (a JSON Schema from the operation contract) and a plugin's settings
// schema (the manifest's `settings`). Each builder answers the form's node
// and a `read()` that returns the value or throws an Error naming the
// field.

import { h, field, select } from './dom.js';

const LONG_TEXT = new Set(['description', 'content', 'body', 'text', 'message', 'work_notes', 'cql', 'native_query']);

function resolve(schema, root) {
  let s = schema || {};
  for (let i = 0; i < 16 && s.$ref; i += 1) {
    const path = s.$ref.replace(/^#\//, '').split('/');
    s = path.reduce((node, key) => (node ? node[key] : undefined), root) || {};
  }
  return s;
}

// What kind of control a schema wants: {kind, nullable, values, schema}.
export function classify(schema, root) {
  let s = resolve(schema, root);
  let nullable = false;
  const alternatives = s.anyOf || s.oneOf;
  if (alternatives) {
    const rest = alternatives.filter((a) => resolve(a, root).type !== 'null');
    nullable = rest.length < alternatives.length;
    const consts = rest.map((a) => resolve(a, root)).filter((a) => a.const !== undefined || (a.enum && a.enum.length));
    if (rest.length && consts.length === rest.length) {
      const values = consts.flatMap((a) => (a.const !== undefined ? [a.const] : a.enum));
      return { kind: 'enum', nullable, values, schema: s };
    }
    if (rest.length !== 1) return { kind: 'json', nullable, schema: s };
    const inner = classify(rest[0], root);
    return { ...inner, nullable: nullable || inner.nullable };
  }
  let type = s.type;
  if (Array.isArray(type)) {
    nullable = type.includes('null');
    const others = type.filter((t) => t !== 'null');
    type = others.length === 1 ? others[0] : 'json';
  }
  if (s.enum) {
    const values = s.enum.filter((v) => v !== null);
    return { kind: 'enum', nullable: nullable || values.length < s.enum.length, values, schema: s };
  }
  if (type === 'object' && s.properties && Object.keys(s.properties).length) {
    return { kind: 'object', nullable, schema: s };
  }
  if (type === 'string' || type === 'integer' || type === 'number' || type === 'boolean') {
    return { kind: type, nullable, schema: s };
  }
  return { kind: 'json', nullable, schema: s };
}

function control(name, schema, root, example, required, path) {
  const c = classify(schema, root);
  const label = `${name}${required && !c.nullable ? ' *' : ''}`;
  const hint = c.schema.description || null;
  const optional = c.nullable || !required;
  const where = path.join('.');
  switch (c.kind) {
    case 'object': {
      const inner = objectControls(c.schema, root, example, [...path]);
      const node = h('fieldset', { 'data-field': where }, h('legend', {}, label), hint ? h('div', { class: 'hint' }, hint) : null, inner.nodes);
      return { node, read: () => inner.read() };
    }
    case 'enum': {
      const options = c.values.map((v) => [String(v), String(v)]);
      if (optional) options.unshift(['', '(none)']);
      const el = select(name, options, example === undefined || example === null ? '' : String(example));
      el.dataset.field = where;
      return { node: field(label, el, hint), read: () => (el.value === '' ? null : el.value) };
    }
    case 'boolean': {
      if (optional) {
        const el = select(name, [['', '(none)'], ['true', 'true'], ['false', 'false']], example === undefined || example === null ? '' : String(example));
        el.dataset.field = where;
        return { node: field(label, el, hint), read: () => (el.value === '' ? null : el.value === 'true') };
      }
      const el = h('input', { type: 'checkbox', name, checked: example === true, 'data-field': where });
      return { node: field(label, el, hint), read: () => el.checked };
    }
    case 'integer':
    case 'number': {
      const el = h('input', { type: 'number', name, step: c.kind === 'integer' ? '1' : 'any', value: example ?? '', 'data-field': where });
      if (c.schema.minimum !== undefined) el.min = c.schema.minimum;
      return {
        node: field(label, el, hint),
        read: () => {
          if (el.value.trim() === '') {
            if (optional) return null;
            throw new Error(`${where}: a number is needed`);
          }
          const n = Number(el.value);
          if (!Number.isFinite(n) || (c.kind === 'integer' && !Number.isInteger(n))) throw new Error(`${where}: not ${c.kind === 'integer' ? 'an integer' : 'a number'}`);
          return n;
        },
      };
    }
    case 'string': {
      const long = LONG_TEXT.has(name);
      const el = long
        ? h('textarea', { name, 'data-field': where }, example ?? '')
        : h('input', { type: 'text', name, value: example ?? '', 'data-field': where, autocomplete: 'off' });
      return {
        node: field(label, el, hint),
        read: () => (el.value === '' && optional ? null : el.value),
      };
    }
    default: {
      const el = h('textarea', { class: 'json', name, 'data-field': where, spellcheck: 'false' }, example === undefined || example === null ? '' : JSON.stringify(example, null, 2));
      return {
        node: field(`${label} (JSON)`, el, hint),
        read: () => {
          if (el.value.trim() === '') {
            if (optional) return null;
            throw new Error(`${where}: JSON is needed`);
          }
          try {
            return JSON.parse(el.value);
          } catch (error) {
            throw new Error(`${where}: not JSON (${error.message})`);
          }
        },
      };
    }
  }
}

function objectControls(schema, root, example, path) {
  const required = new Set(schema.required || []);
  const parts = Object.entries(schema.properties || {}).map(([name, sub]) => ({
    name,
    ...control(name, sub, root, example ? example[name] : undefined, required.has(name), [...path, name]),
  }));
  return {
    nodes: parts.map((p) => p.node),
    read: () => Object.fromEntries(parts.map((p) => [p.name, p.read()])),
  };
}

// A form for an operation's input schema, prefilled from `example`, with
// a switch to edit the whole input as JSON.
export function schemaForm(schema, example) {
  const c = classify(schema, schema);
  // An input record without fields (`{}` and nothing else is accepted).
  const keys = Object.keys(c.schema.properties || {});
  if (c.schema.type === 'object' && !keys.length && c.schema.additionalProperties === false) {
    return { node: h('p', { class: 'muted' }, 'This operation takes no input.'), read: () => ({}) };
  }
  const raw = h('textarea', { class: 'json', name: 'input-json', spellcheck: 'false' }, JSON.stringify(example ?? {}, null, 2));
  const rawField = field('Input (JSON)', raw, 'The whole input as JSON; it is sent as written.');
  rawField.hidden = true;
  let fields = null;
  let fieldsNode = null;
  if (c.kind === 'object') {
    fields = objectControls(c.schema, schema, example, []);
    fieldsNode = h('div', { class: 'generated' }, fields.nodes);
  } else {
    rawField.hidden = false;
  }
  const toggle = h('input', { type: 'checkbox', name: 'as-json', checked: !fields });
  toggle.addEventListener('change', () => {
    if (toggle.checked && fields) {
      try {
        raw.value = JSON.stringify(fields.read(), null, 2);
      } catch (_) {
        // keep what the textarea had
      }
    }
    rawField.hidden = !toggle.checked;
    if (fieldsNode) fieldsNode.hidden = toggle.checked;
  });
  const node = h('div', {}, fields ? field('Edit as JSON', toggle) : null, fieldsNode, rawField);
  return {
    node,
    read() {
      if (!fields || toggle.checked) {
        try {
          return JSON.parse(raw.value || '{}');
        } catch (error) {
          throw new Error(`input: not JSON (${error.message})`);
        }
      }
      return fields.read();
    },
  };
}

// Inputs for a plugin's settings (the manifest's `settings`), prefilled
// with `current` values or the defaults. `read()` answers the settings
// that have a value, as strings.
export function settingsForm(specs, current = {}) {
  const parts = specs.map((spec) => {
    const value = current[spec.name] ?? spec.default ?? '';
    const label = `${spec.name}${spec.required ? ' *' : ''}`;
    const hint = [spec.description, spec.type === 'json-pointers' && spec.values.length ? `keys: ${spec.values.join(', ')}` : null]
      .filter(Boolean)
      .join(' · ');
    let el;
    if (spec.type === 'enum') {
      el = select(spec.name, [['', '(none)'], ...spec.values.map((v) => [v, v])], value);
    } else if (spec.type === 'boolean') {
      el = select(spec.name, [['', '(none)'], ['true', 'true'], ['false', 'false']], value);
    } else if (spec.type === 'json-pointers') {
      el = h('textarea', { class: 'json', name: spec.name, spellcheck: 'false' }, value);
    } else {
      el = h('input', {
        type: spec.type === 'url' ? 'url' : spec.type === 'integer' ? 'number' : 'text',
        name: spec.name,
        value,
        autocomplete: 'off',
        required: spec.required && !spec.default,
      });
    }
    el.dataset.setting = spec.name;
    return { spec, el, node: field(label, el, hint || null) };
  });
  return {
    nodes: parts.map((p) => p.node),
    read() {
      const out = {};
      for (const { spec, el } of parts) {
        const v = el.value.trim();
        if (v !== '') out[spec.name] = v;
      }
      return out;
    },
  };
}

// Inputs for a credential of `kind`; every secret input is write-only (a
// password field, never prefilled, cleared after use). `read()` answers the
// API's `auth` object.
export function credentialForm(kind) {
  const secret = (name, label, hint) => {
    const el = h('input', { type: 'password', name, autocomplete: 'new-password', 'data-secret': 'true' });
    return { el, node: field(label, el, hint) };
  };
  const text = (name, label, hint) => {
    const el = h('input', { type: 'text', name, autocomplete: 'off' });
    return { el, node: field(label, el, hint) };
  };
  let parts = {};
  if (kind === 'basic') parts = { username: text('username', 'Username'), password: secret('password', 'Password') };
  if (kind === 'bearer') parts = { token: secret('token', 'Token') };
  if (kind === 'api-key') parts = { key: secret('key', 'API key'), prefix: text('prefix', 'Prefix', "Text before the key; empty keeps the plugin's default.") };
  if (kind === 'oauth2') parts = { client_id: text('client_id', 'Client id', "Empty: the org app's or the manifest's."), client_secret: secret('client_secret', 'Client secret', 'Empty: none or the org app’s.') };
  return {
    nodes: Object.values(parts).map((p) => p.node),
    read() {
      const auth = { kind };
      for (const [name, { el }] of Object.entries(parts)) {
        const v = el.value;
        if (name === 'prefix' || name === 'client_id' || name === 'client_secret') {
          if (v !== '') auth[name] = v;
        } else {
          auth[name] = v;
        }
      }
      return auth;
    },
    wipe() {
      for (const { el } of Object.values(parts)) if (el.type === 'password') el.value = '';
    },
  };
}
