// A Node.js host for levee policy components, held to the shared decision
// vectors.
//
//   npx jco transpile standard.wasm -o out/standard --name policy
//   node vectors.mjs ../../tests/vectors/decisions.json standard=out/standard/policy.js
//
// Each NAME=MODULE argument is a policy component transpiled by jco. For
// every suite of the vectors file, the host configures the suite's policy,
// asks it `on-request` and `on-outcome` for each vector, and compares the
// answers with the recorded ones (the native core's). It exits 0 only when
// every answer agrees.
//
// Values cross in the canonical JSON form of `levee_policy_core::wire`:
// records keyed by WIT names, variants as {tag, val}, and a u64 as a number
// up to 2^53 - 1 or a decimal string beyond. jco wants camelCase keys,
// `undefined` for `none` and a BigInt for every u64.

import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { resolve } from 'node:path';

/// The u64 fields of the inputs (request facts, view, attempt), by name.
/// `id` is a u64 in `request-facts` only (an upstream's id is a u32).
const U64 = new Set([
  'received-at', 'deadline', 'now', 'random', 'reset-at',
  'rate-limited-until', 'overloaded-until', 'prev-delay-ms',
  'retry-after-ms', 'retry-after',
]);
const isU64 = (key, parent) => U64.has(key) || (key === 'id' && parent === 'req');

const camel = (k) => k.replace(/-([a-z])/g, (_, c) => c.toUpperCase());
const kebab = (k) => k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());

/// Canonical JSON -> the values jco's bindings take; `key` is the field
/// holding `value`, `parent` the field holding its record.
function toJco(value, key, parent) {
  if (value === null) return undefined;
  if (isU64(key, parent)) return BigInt(value);
  if (Array.isArray(value)) return value.map((v) => toJco(v, key, parent));
  if (typeof value === 'object') {
    const out = {};
    for (const [k, v] of Object.entries(value)) out[camel(k)] = toJco(v, k, key);
    return out;
  }
  return value;
}

/// jco's values -> canonical JSON.
function fromJco(value) {
  if (value === undefined || value === null) return null;
  if (typeof value === 'bigint') {
    return value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value.toString();
  }
  if (Array.isArray(value)) return value.map(fromJco);
  if (ArrayBuffer.isView(value)) return Array.from(value, fromJco); // list<u32> is a Uint32Array
  if (typeof value === 'object') {
    const out = {};
    for (const [k, v] of Object.entries(value)) {
      if (k === 'val' && v === undefined && 'tag' in value) continue; // a case without payload
      out[kebab(k)] = fromJco(v);
    }
    return out;
  }
  return value;
}

/// JSON text with sorted keys, for comparing values.
function canonical(value) {
  return JSON.stringify(value, (_, v) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, v[k]]))
      : v);
}

function usage(message) {
  console.error(`error: ${message}`);
  console.error('usage: node vectors.mjs VECTORS.json NAME=MODULE.js...');
  process.exit(2);
}

const [vectorsPath, ...specs] = process.argv.slice(2);
if (!vectorsPath || specs.length === 0) usage('missing arguments');
const modules = new Map();
for (const spec of specs) {
  const eq = spec.indexOf('=');
  if (eq <= 0) usage(`\`${spec}\` is not NAME=MODULE.js`);
  const mod = await import(pathToFileURL(resolve(spec.slice(eq + 1))).href);
  if (!mod.policy) usage(`${spec.slice(eq + 1)} does not export the policy interface`);
  modules.set(spec.slice(0, eq), mod.policy);
}

const doc = JSON.parse(readFileSync(vectorsPath, 'utf8'));
let agree = 0;
const differ = [];
for (const [s, suite] of doc.suites.entries()) {
  const policy = modules.get(suite.policy);
  if (!policy) usage(`no module given for policy \`${suite.policy}\` (suite ${s})`);
  try {
    policy.configure(suite.config);
  } catch (e) {
    usage(`suite ${s}: ${suite.policy} refused its config: ${JSON.stringify(fromJco(e.payload ?? e.message))}`);
  }
  for (const [i, v] of suite.vectors.entries()) {
    const req = toJco(v.req, 'req');
    const view = toJco(v.view, 'view');
    const answers = {
      'on-request': fromJco(policy.onRequest(req, view)),
      'on-outcome': fromJco(policy.onOutcome(req, toJco(v.order, 'order'), toJco(v.attempt, 'attempt'), view)),
    };
    for (const [call, got] of Object.entries(answers)) {
      if (canonical(got) === canonical(v[call])) {
        agree += 1;
      } else {
        differ.push(`suite ${s} (${suite.policy}) vector ${i} ${call}:\n  want ${canonical(v[call])}\n  got  ${canonical(got)}`);
      }
    }
  }
  console.log(`suite ${s}: ${suite.policy} ${JSON.stringify(suite.config)}: ${suite.vectors.length} vectors`);
}
for (const d of differ.slice(0, 10)) console.log(d);
console.log(`node ${process.version}: ${agree} answers agree, ${differ.length} differ`);
process.exit(differ.length === 0 && agree > 0 ? 0 : 1);
