// Project an AsyncAPI 3.x document onto a synthetic OpenAPI 3.1 document so that an
// OpenAPI breaking-change checker (optic) judges message payloads with RESPONSE
// semantics: an event is data the producer hands to consumers, like a response body
// (removing / un-requiring a property, widening a type, adding an enum value = breaking;
// adding an optional property = not breaking).
// Each message in components.messages (and each inline channel message) becomes
// GET /asyncapi/messages/<name>, 200 application/json body = the payload schema, with
// local $refs inlined and allOf merged (optic's own allOf merge keeps the FIRST copy of a
// property, so an envelope's `data: {type: object}` would hide the refined `data` schema).
// Usage: node asyncapi-to-openapi.mjs in.yaml > out.json
import fs from 'node:fs';
import yaml from 'js-yaml';
import mergeAllOf from 'json-schema-merge-allof';

const doc = yaml.load(fs.readFileSync(process.argv[2], 'utf8'));
if (!/^3\./.test(String(doc.asyncapi || ''))) throw new Error('expected an AsyncAPI 3.x document');

const lookup = (ref) => {
  if (!ref.startsWith('#/')) throw new Error(`only local $refs are supported: ${ref}`);
  return ref.slice(2).split('/').map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'))
    .reduce((o, p) => { if (o?.[p] === undefined) throw new Error(`dangling $ref ${ref}`); return o[p]; }, doc);
};
const deref = (node, seen = []) => {
  if (Array.isArray(node)) return node.map((n) => deref(n, seen));
  if (!node || typeof node !== 'object') return node;
  if (typeof node.$ref === 'string') {
    if (seen.includes(node.$ref)) throw new Error(`recursive $ref ${node.$ref} not supported`);
    const { $ref, ...siblings } = node;                       // 3.1/JSON Schema allows siblings next to $ref
    const target = deref(lookup($ref), [...seen, $ref]);
    return Object.keys(siblings).length ? { allOf: [target, deref(siblings, seen)] } : target;
  }
  return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, deref(v, seen)]));
};
const schema = (s) => mergeAllOf(deref(s ?? {}), { ignoreAdditionalProperties: true });

const messages = new Map();
for (const [name, m] of Object.entries(doc.components?.messages || {})) messages.set(name, deref(m));
for (const [ch, c] of Object.entries(doc.channels || {}))
  for (const [name, m] of Object.entries(c?.messages || {}))
    if (!m.$ref) messages.set(`${ch}.${name}`, deref(m));   // inline (non-component) messages

const paths = {};
for (const [name, m] of [...messages].sort(([a], [b]) => a.localeCompare(b))) {
  const res = { description: m.summary || m.title || name,
                content: { 'application/json': { schema: schema(m.payload) } } };
  if (m.headers) {
    const h = schema(m.headers);
    res.headers = Object.fromEntries(Object.entries(h.properties || {})
      .map(([k, s]) => [k, { schema: s, required: (h.required || []).includes(k) }]));
  }
  paths[`/asyncapi/messages/${encodeURIComponent(name)}`] =
    { get: { operationId: `message_${name}`.replace(/[^A-Za-z0-9_]/g, '_'), responses: { 200: res } } };
}
process.stdout.write(JSON.stringify({
  openapi: '3.1.0',
  info: { title: `${doc.info?.title ?? 'AsyncAPI'} (AsyncAPI message projection)`, version: String(doc.info?.version ?? '0') },
  paths,
}, null, 2) + '\n');
