/* berth console: the browser side of `berth up`'s web console.
 *
 * One page with hash routes (#/, #/claims, #/claims/NAME, #/events,
 * #/backups, #/services/NAME, #/files/SVC). Every figure comes from the
 * admin JSON API on the same origin, authenticated by the session cookie;
 * every request that changes something carries the CSRF token of the
 * page's <meta name="berth-csrf">. The DOM is built with createElement and
 * textContent only: server data (claim names, file names, event messages)
 * never passes through innerHTML.
 */
'use strict';

const CSRF = document.querySelector('meta[name="berth-csrf"]').content;
const SVG_NS = 'http://www.w3.org/2000/svg';
const KEEP_EVENTS = 2000; // events held in memory for the overview and the events page
const KINDS = ['on-stop', 'scheduled', 'manual', 'background'];

/* ---------- DOM helpers ---------- */

function build(node, attrs, kids) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  // Strings become text nodes: never parsed as markup.
  for (const kid of kids.flat(3)) {
    if (kid !== null && kid !== undefined && kid !== false) node.append(kid instanceof Node ? kid : String(kid));
  }
  return node;
}
const el = (tag, attrs, ...kids) => build(document.createElement(tag), attrs, kids);
const svg = (tag, attrs, ...kids) => build(document.createElementNS(SVG_NS, tag), attrs, kids);
const $ = (sel) => document.querySelector(sel);
const enc = encodeURIComponent;

// A table in a wrapper that scrolls sideways on a narrow screen; the
// wrapper is focusable so a keyboard can scroll it too. `id` is the
// table's id, or its attributes (a table repeated per claim has no id).
function table(id, caption, headers, rows) {
  const body = rows.length ? rows : [el('tr', {}, el('td', { colspan: headers.length, class: 'none' }, 'None.'))];
  return el('div', { class: 'table-wrap', tabindex: 0, role: 'region', 'aria-label': caption },
    el('table', typeof id === 'object' ? id : { id },
      el('caption', {}, caption),
      el('thead', {}, el('tr', {}, headers.map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, body)));
}
const row = (attrs, cells) => el('tr', attrs, cells.map((c) => el('td', {}, c)));

// What identifies a focused control across a re-render: its kind, target
// and the data-* keys of its row.
function focusKey(n) {
  const tr = n.closest('tr');
  const rowKey = tr ? [...tr.attributes].filter((a) => a.name.startsWith('data-')).map((a) => a.value).join() : '';
  return [n.tagName, n.id, n.getAttribute('href'), n.dataset.action, n.getAttribute('aria-label'), rowKey].join('|');
}

// Replaces a polled section only when its data changed, and keeps the
// keyboard focus where it was (a refresh every 2 s must not throw a
// keyboard user back to the top of the page).
const renderedKeys = new WeakMap();
function render(box, data, make) {
  const key = JSON.stringify(data);
  if (renderedKeys.get(box) === key) return;
  renderedKeys.set(box, key);
  const active = document.activeElement;
  const had = active && box.contains(active) ? focusKey(active) : null;
  box.replaceChildren(...[make()].flat(3).filter((n) => n !== null && n !== undefined && n !== false));
  if (had) {
    const again = [...box.querySelectorAll('a, button, input, select, textarea, [tabindex]')].find((n) => focusKey(n) === had);
    if (again) again.focus();
  }
}

/* ---------- formatting ---------- */

const shortTask = (arn) => (arn ? String(arn).split('/').pop() : '');
const shortId = (id) => (id ? String(id).slice(0, 8) : '—');
const ms = (t) => (t ? Date.parse(t) : NaN);

function fmtTime(t) {
  if (!t && t !== 0) return '—';
  return new Date(t).toLocaleString(undefined, {
    year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit',
  });
}
const timeEl = (t) => (t ? el('time', { datetime: t, title: t }, fmtTime(t)) : '—');

function fmtSecs(s) {
  if (s === null || s === undefined || !Number.isFinite(s)) return '—';
  if (s < 10) return `${s.toFixed(2)} s`;
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.round((s % 86400) / 3600)} h`;
}

function fmtBytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

// The value a datetime-local input takes for a date, in local time.
function localInput(d) {
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/* ---------- the API ---------- */

// One request to the admin API. Non-GET requests carry the CSRF header; a
// 401 means the session ended. Errors are thrown with the API's own text.
async function api(path, opts = {}) {
  const method = opts.method || 'GET';
  const init = { method, credentials: 'same-origin', headers: {} };
  if (method !== 'GET') init.headers['X-Berth-Csrf'] = CSRF;
  if (opts.json !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(opts.json);
  } else if (opts.body !== undefined) {
    init.headers['Content-Type'] = opts.type || 'application/octet-stream';
    init.body = opts.body;
  }
  const res = await fetch(path, init);
  // A file service with a token of its own answers 401 with a Bearer
  // challenge through the proxy: that is not the console's session.
  const fileAuth = path.includes('/http/') && res.headers.get('WWW-Authenticate');
  if (res.status === 401 && !fileAuth) {
    location.assign('/console/login');
    throw new Error('The session has ended; log in again.');
  }
  const text = await res.text();
  let data = text;
  try { data = text ? JSON.parse(text) : null; } catch (_) { /* a plain-text answer (axum's rejections) */ }
  if (!res.ok) {
    const why = data && typeof data === 'object' && data.error ? data.error : (text || res.statusText);
    throw new Error(`${why} (HTTP ${res.status})`);
  }
  return data;
}
const post = (path, json) => api(path, json === undefined ? { method: 'POST' } : { method: 'POST', json });

/* ---------- status area and confirmation ---------- */

function flash(text, ok) {
  const f = $('#flash');
  f.textContent = text;
  f.className = ok ? 'ok' : 'error';
}

// Asks in the one <dialog id="confirm">; resolves true only on "yes"
// (Escape and Cancel both mean no).
function confirmDialog(text) {
  const d = $('#confirm');
  if (!d || typeof d.showModal !== 'function') return Promise.resolve(window.confirm(text));
  $('#confirm-text').textContent = text;
  d.returnValue = '';
  return new Promise((resolve) => {
    d.addEventListener('close', () => resolve(d.returnValue === 'yes'), { once: true });
    d.showModal();
  });
}

// Runs one action of a button: confirmation when asked for, then the
// request, then its outcome in the status area. `done` turns the answer
// into the success text (and may throw when the answer reports a failure).
async function act(button, { ask, start, run, done }) {
  if (button.getAttribute('aria-busy') === 'true') return;
  if (ask && !(await confirmDialog(ask))) { flash('Cancelled: nothing was changed.', true); return; }
  // aria-busy rather than disabled: a disabled button loses the focus.
  button.setAttribute('aria-busy', 'true');
  if (start) flash(start, true);
  try {
    flash(done(await run()), true);
  } catch (e) {
    flash(e.message, false);
  } finally {
    button.removeAttribute('aria-busy');
  }
}

/* ---------- views: timers and event subscriptions live as long as the view ---------- */

let view = { timers: [], subs: [] };

// Runs `fn` now and every `period` ms while the view lives; never two at
// once (a slow answer must not pile requests up). Returns the runner, for
// a refresh on demand.
function every(period, fn) {
  const mine = view;
  let busy = false;
  let again = false;
  const run = async () => {
    if (mine !== view) return;
    if (busy) { again = true; return; }
    busy = true;
    try { await fn(); } catch (e) { if (mine === view) flash(e.message, false); }
    busy = false;
    if (again) { again = false; run(); }
  };
  run();
  if (period) view.timers.push(setInterval(() => { if (!document.hidden) run(); }, period));
  return run;
}
const onEvents = (fn) => view.subs.push(fn);

/* ---------- the event log: history, then the stream (or polling) ---------- */

const events = { list: [], seen: new Set(), last: 0, loaded: false };

function addEvents(batch) {
  const added = batch.filter((e) => e && !events.seen.has(e.seq));
  if (!added.length) return;
  for (const e of added) { events.seen.add(e.seq); events.last = Math.max(events.last, e.seq); }
  events.list = events.list.concat(added).sort((a, b) => a.seq - b.seq);
  if (events.list.length > KEEP_EVENTS) {
    for (const e of events.list.splice(0, events.list.length - KEEP_EVENTS)) events.seen.delete(e.seq);
  }
  for (const fn of view.subs) fn(added);
}
const newestEvents = (n) => events.list.slice(-n).reverse();

// GET /v1/events answers oldest first from `after`: read pages up to the
// end and keep the tail.
async function loadHistory() {
  let after = 0;
  for (;;) {
    const page = await api(`/v1/events?after=${after}&limit=10000`);
    addEvents(page);
    if (page.length < 10000) break;
    after = page[page.length - 1].seq;
  }
  events.loaded = true;
  // Nothing new, but the views waiting for the history re-render.
  for (const fn of view.subs) fn([]);
}

function pollEvents() {
  setInterval(async () => {
    if (document.hidden) return;
    try { addEvents(await api(`/v1/events?after=${events.last}&limit=10000`)); } catch (_) { /* shown by the views' own polls */ }
  }, 2000);
}

function startEvents() {
  // The stream first, so nothing falls between the history and it (the
  // seq numbers drop whatever both deliver).
  if (window.EventSource) {
    const stream = new EventSource('/v1/events/stream');
    stream.onmessage = (m) => { try { addEvents([JSON.parse(m.data)]); } catch (_) { /* not an event */ } };
    stream.onerror = () => { stream.close(); pollEvents(); };
  } else {
    pollEvents();
  }
  loadHistory().catch((e) => flash(`Events: ${e.message}`, false));
}

function eventRows(list) {
  return list.map((e) => el('tr', { 'data-seq': e.seq, 'data-kind': e.kind, 'data-claim': e.claim || '', class: /fail|error|rolled-back/.test(e.kind) ? 'bad' : null },
    el('td', {}, timeEl(e.time)),
    el('td', {}, e.claim ? el('a', { href: `#/claims/${enc(e.claim)}` }, e.claim) : '—'),
    el('td', {}, el('code', {}, e.kind)),
    el('td', {}, e.message)));
}
const eventTable = (id, caption, list) => table(id, caption, ['Time', 'Claim', 'Kind', 'Message'], eventRows(list));

/* ---------- tasks and health ---------- */

const taskMap = (tasks) => new Map(tasks.map((t) => [t.arn, t]));
const isHealthy = (t) => !!t && t.last_status === 'RUNNING' && (t.health === 'HEALTHY' || !t.has_health_check);

function healthText(claim, task) {
  if (!claim.task) return '—';
  if (!task) return 'unknown';
  if (task.last_status === 'STOPPED') return 'stopped';
  if (isHealthy(task)) return 'healthy';
  if (task.health === 'UNHEALTHY') return 'unhealthy';
  return task.last_status.toLowerCase();
}
const badge = (text) => el('span', { class: `badge ${String(text).replace(/[^a-z-]/gi, '')}` }, text);

function backoffText(b) {
  if (!b || !b.failures) return '—';
  const wait = b.not_before ? (ms(b.not_before) - Date.now()) / 1000 : 0;
  return `${b.failures} quick stop${b.failures > 1 ? 's' : ''}${wait > 0 ? `, next launch in ${fmtSecs(wait)}` : ''}`;
}

/* ---------- navigation ---------- */

let navServices = '';

function updateNav(services) {
  const names = services.map((s) => s.name);
  if (names.join('\n') === navServices) return;
  navServices = names.join('\n');
  const nav = $('#nav');
  nav.querySelectorAll('li.svc').forEach((li) => li.remove());
  for (const n of names) {
    nav.append(el('li', { class: 'svc' }, el('a', { href: `#/services/${enc(n)}` }, `Service: ${n}`)),
      el('li', { class: 'svc' }, el('a', { href: `#/files/${enc(n)}` }, `Files: ${n}`)));
  }
  markNav();
}

function markNav() {
  const hash = location.hash || '#/';
  for (const a of document.querySelectorAll('#nav a')) {
    const href = a.getAttribute('href');
    const here = href === hash || (href !== '#/' && hash.startsWith(`${href}/`));
    if (here) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
}

/* ---------- #/ overview ---------- */

function overview(root) {
  const info = el('div');
  const services = el('div');
  const lb = el('div');
  const recent = el('div');
  root.append(el('h1', { tabindex: -1 }, 'Overview'), info,
    el('h2', {}, 'Services'), services, el('h2', {}, 'Load balancer'), lb, el('h2', {}, 'Latest events'), recent);
  every(2000, async () => {
    const [status, claims, tasks] = await Promise.all([api('/v1/status'), api('/v1/claims'), api('/v1/tasks')]);
    updateNav(status.services);
    const byArn = taskMap(tasks);
    render(info, [status.cluster, status.pid, status.started_at, status.state], () =>
      el('p', { class: 'meta' }, `Cluster ${status.cluster}, berth up pid ${status.pid}, started `, timeEl(status.started_at), `, state folder ${status.state}.`));
    const svcRows = status.services.map((s) => {
      const mine = claims.filter((c) => c.service === s.name && c.task);
      return { name: s.name, desired: s.desired_count, running: s.running, healthy: mine.filter((c) => isHealthy(byArn.get(c.task))).length };
    });
    render(services, svcRows, () => table('services', 'Services: desired, running and healthy tasks',
      ['Service', 'Desired', 'Running', 'Healthy', 'Files'],
      svcRows.map((s) => row({ 'data-service': s.name }, [
        el('a', { href: `#/services/${enc(s.name)}` }, s.name), s.desired, s.running, s.healthy,
        el('a', { href: `#/files/${enc(s.name)}` }, `files of ${s.name}`)]))));
    const byTask = new Map(claims.filter((c) => c.task).map((c) => [c.task, c.name]));
    render(lb, [status.load_balancer || null, [...byTask]], () => lbSection(status.load_balancer, byTask));
  });
  const showRecent = () => render(recent, [events.loaded, newestEvents(20).map((e) => e.seq)], () =>
    events.loaded || events.list.length ? eventTable('recent-events', 'The latest 20 events, newest first', newestEvents(20)) : el('p', {}, 'Loading events…'));
  showRecent();
  onEvents(showRecent);
}

function lbSection(lb, byTask) {
  if (!lb) return el('p', {}, 'No load balancer (set [lb] in berth.toml).');
  return [
    // Only an http(s) address becomes a link: never a javascript: URL.
    el('p', {}, 'In front of ', el('a', { href: `#/services/${enc(lb.service)}` }, lb.service), ' at ',
      /^https?:\/\//.test(lb.url) ? el('a', { href: lb.url, rel: 'noopener' }, lb.url) : el('code', {}, lb.url), '.'),
    table('lb-targets', 'Load balancer targets and their health', ['Claim', 'Task', 'Address', 'State', 'Healthy'],
      (lb.targets || []).map((t) => row({ 'data-target': t.id, 'data-state': t.state }, [
        byTask.has(t.id) ? el('a', { href: `#/claims/${enc(byTask.get(t.id))}` }, byTask.get(t.id)) : '—',
        el('code', {}, shortTask(t.id)), t.addr, badge(t.state), t.healthy ? 'yes' : 'no']))),
  ];
}

/* ---------- #/claims ---------- */

function claimsView(root) {
  const box = el('div');
  root.append(el('h1', { tabindex: -1 }, 'Claims'), box);
  const refresh = every(2000, async () => {
    const [claims, tasks] = await Promise.all([api('/v1/claims'), api('/v1/tasks')]);
    const byArn = taskMap(tasks);
    const rows = claims.map((c) => ({ c, health: healthText(c, byArn.get(c.task)), backoff: backoffText(c.backoff) }));
    render(box, rows, () => table('claims', 'Claims', ['Name', 'Service', 'Desired', 'Generation', 'Task', 'Health', 'Head snapshot', 'Handoff step', 'Backoff'],
      rows.map(({ c, health, backoff }) => row({ 'data-claim': c.name }, [
        el('a', { href: `#/claims/${enc(c.name)}` }, c.name), c.service, c.desired, c.generation,
        c.task ? el('code', {}, shortTask(c.task)) : '—', badge(health),
        c.head_snapshot ? el('code', { title: c.head_snapshot }, shortId(c.head_snapshot)) : '—',
        c.handoff ? c.handoff.step : '—', backoff]))));
  });
  onEvents(() => refresh());
}

/* ---------- #/claims/NAME ---------- */

function claimView(root, name) {
  const summary = el('div');
  const chart = el('div', { class: 'chart-wrap' });
  const gens = el('div');
  const snaps = el('div');
  let current = null;
  root.append(el('h1', { tabindex: -1 }, 'Claim ', el('code', {}, name)), summary,
    el('h2', {}, 'Lineage'), chart, gens, el('h2', {}, 'Snapshots'), snaps, claimActions(name, () => current));
  const refresh = every(2000, async () => {
    const [data, tasks] = await Promise.all([api(`/v1/claims/${enc(name)}`), api('/v1/tasks')]);
    current = data;
    const c = data.claim;
    const gensSorted = data.generations.slice().sort((a, b) => a.generation - b.generation);
    const snapsSorted = data.snapshots.slice().sort((a, b) => ms(a.time) - ms(b.time));
    const health = healthText(c, taskMap(tasks).get(c.task));
    render(summary, [c, health], () => el('dl', { class: 'facts' },
      fact('Service', el('a', { href: `#/services/${enc(c.service)}` }, c.service)), fact('Desired', c.desired),
      fact('Generation', c.generation), fact('Task', c.task ? el('code', {}, shortTask(c.task)) : '—'), fact('Health', badge(health)),
      fact('Revision', c.revision), fact('Handoff', c.handoff ? `${c.handoff.step} (${c.handoff.intent_reason})` : '—'),
      fact('Backoff', backoffText(c.backoff)), c.fork_of ? fact('Fork of', el('a', { href: `#/claims/${enc(c.fork_of)}` }, c.fork_of)) : null));
    // The running bar grows with the clock: redraw every poll, not only on change.
    render(chart, [gensSorted, snapsSorted, Date.now()], () => [timeline(name, gensSorted, snapsSorted), legend()]);
    render(gens, [gensSorted, snapsSorted], () => generationsTable(gensSorted, snapsSorted));
    render(snaps, snapsSorted, () => snapshotsTable(snapsSorted));
  });
  onEvents((batch) => { if (batch.some((e) => e.claim === name)) refresh(); });
}

const fact = (term, value) => [el('dt', {}, term), el('dd', {}, value)];

// The data a generation's stop lost: from the snapshot the next generation
// started from to the stop (0 when it started from the stop snapshot).
// Before a next generation exists: 0 with a stop snapshot, else the time
// since the newest snapshot before the stop.
function rpoMs(gen, next, snaps) {
  const stop = ms(gen.stopped_at);
  if (!Number.isFinite(stop)) return null;
  const source = next && next.source_snapshot && snaps.find((s) => s.id === next.source_snapshot);
  if (source) return Math.max(0, stop - ms(source.time));
  if (gen.stop_snapshot && (!next || next.source_snapshot === gen.stop_snapshot)) return 0;
  const before = snaps.filter((s) => ms(s.time) <= stop).pop();
  return before ? stop - ms(before.time) : null;
}

function generationsTable(gens, snaps) {
  return table('generations', 'Generations: one row per task of this claim', ['Generation', 'Task', 'Started', 'Stopped', 'Stop code', 'Stop reason', 'RTO', 'RPO', 'Volume from'],
    gens.map((g, i) => {
      const rpo = rpoMs(g, gens[i + 1], snaps);
      const from = g.source_snapshot ? `${g.adopted ? 'adopted, ' : ''}snapshot ${shortId(g.source_snapshot)}` : (g.adopted ? 'adopted' : 'empty volume');
      return row({ 'data-generation': g.generation, 'data-rto-ms': g.rto_ms ?? '', 'data-rpo-ms': rpo ?? '' }, [
        g.generation, g.task ? el('code', {}, shortTask(g.task)) : '—', timeEl(g.started_at), timeEl(g.stopped_at),
        g.stop_code || (g.stopped_at ? '—' : 'running'), g.stop_reason || '—',
        g.rto_ms === null || g.rto_ms === undefined ? '—' : fmtSecs(g.rto_ms / 1000),
        rpo === null ? (g.stopped_at ? 'unknown' : '—') : fmtSecs(rpo / 1000), from]);
    }).reverse());
}

function snapshotsTable(snaps) {
  const now = Date.now();
  return table('snapshots', 'Snapshots of this claim, newest first', ['Time', 'Id', 'Kind', 'Generation', 'Consistency', 'Pinned', 'Lock'],
    snaps.slice().reverse().map((s) => row({ 'data-snapshot': s.id, 'data-kind': s.kind || 'unknown' }, [
      timeEl(s.time), el('code', { title: s.id }, shortId(s.id)), (s.kind || 'unknown') + (s.pending ? ' (pending)' : ''),
      s.generation ?? '—', s.consistency || '—', s.pinned ? 'yes' : 'no',
      s.lock && ms(s.lock.until) > now ? `${s.lock.mode} until ${fmtTime(s.lock.until)}` : '—'])));
}

/* ---------- charts over time (the claim's lineage, the Backups page) ---------- */

// The tick label for a time axis `span` ms wide: the coarsest unit that
// still tells the five ticks apart. Ticks are span/4 apart, so a unit no
// longer than that never shows two ticks alike (seconds alone repeated
// "12:57:02" over a span of 3 s).
function tickFormat(span) {
  const hms = { hour: '2-digit', minute: '2-digit', second: '2-digit' };
  const o = span < 10e3 ? { ...hms, fractionalSecondDigits: 1 }
    : span < 600e3 ? hms
      : span < 12 * 3600e3 ? { hour: '2-digit', minute: '2-digit' }
        : span < 4 * 86400e3 ? { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' }
          : { year: span > 300 * 86400e3 ? 'numeric' : undefined, month: 'short', day: 'numeric' };
  return (t) => new Date(t).toLocaleString(undefined, o);
}

// A time axis from x0 to x1 at height y: a line, five ticks, and labels
// that never repeat (a clock change could still make two alike: skip it).
function timeAxis(out, x, t0, t1, y, x0, x1) {
  out.append(svg('line', { x1: x0, x2: x1, y1: y, y2: y, class: 'axis' }));
  const label = tickFormat(t1 - t0);
  let last = null;
  for (let k = 0; k <= 4; k++) {
    const t = t0 + ((t1 - t0) * k) / 4;
    const text = label(t);
    if (text === last) continue;
    last = text;
    out.append(svg('line', { x1: x(t), x2: x(t), y1: y, y2: y + 4, class: 'axis' }),
      svg('text', { x: x(t), y: y + 16, 'text-anchor': k === 0 ? 'start' : k === 4 ? 'end' : 'middle', class: 'tick' }, text));
  }
}

// The lineage as a picture: one lane per generation, a bar from its start
// to its stop (or now), its snapshots as points on the lane at their time.
function timeline(name, gens, snaps) {
  const W = 800; const left = 70; const right = 20; const lane = 30; const top = 6; const axis = 26;
  const now = Date.now();
  const known = new Set(gens.map((g) => g.generation));
  const loose = snaps.filter((s) => !known.has(s.generation));
  const lanes = gens.map((g) => g.generation).reverse(); // newest on top, as in the table
  if (loose.length) lanes.push('other');
  const times = [now, ...gens.flatMap((g) => [ms(g.started_at), ms(g.stopped_at)]), ...snaps.map((s) => ms(s.time))].filter(Number.isFinite);
  const t1 = Math.max(...times);
  const t0 = Math.min(Math.min(...times), t1 - 1000);
  const x = (t) => left + ((t - t0) / (t1 - t0)) * (W - left - right);
  const y = (key) => top + lanes.indexOf(key) * lane;
  const H = top + lanes.length * lane + axis;
  const out = svg('svg', { id: 'timeline', role: 'img', 'aria-labelledby': 'timeline-title timeline-desc', viewBox: `0 0 ${W} ${H}`, width: W, height: H },
    svg('title', { id: 'timeline-title' }, `Lineage of claim ${name}`),
    svg('desc', { id: 'timeline-desc' }, `${gens.length} generation${gens.length === 1 ? '' : 's'} and ${snaps.length} snapshot${snaps.length === 1 ? '' : 's'} from ${fmtTime(t0)} to ${fmtTime(t1)}. The tables below hold the same data.`));
  gens.forEach((g, i) => {
    const ly = y(g.generation);
    const start = ms(g.started_at);
    // A generation that never recorded its stop ends where the next began.
    const end = Number.isFinite(ms(g.stopped_at)) ? ms(g.stopped_at) : (gens[i + 1] ? ms(gens[i + 1].started_at) || now : now);
    const running = !g.stopped_at && !gens[i + 1];
    const label = g.stop_code || (running ? 'running' : g.started_at ? 'stopped' : 'not started');
    const grp = svg('g', { class: `generation ${running ? 'running' : g.stop_code === 'SpotInterruption' ? 'spot' : 'stopped'}`, 'data-generation': g.generation },
      svg('title', {}, `Generation ${g.generation}: ${fmtTime(g.started_at)} to ${g.stopped_at ? fmtTime(g.stopped_at) : 'now'}, ${label}`),
      svg('text', { x: 4, y: ly + 13, class: 'lane-label' }, `gen ${g.generation}`));
    if (Number.isFinite(start)) {
      const x0 = x(start); const x1 = Math.max(x(end), x0 + 2);
      grp.append(svg('rect', { x: x0, y: ly + 4, width: x1 - x0, height: 10, rx: 2, class: 'bar' }));
      const anchorEnd = x0 > W - 200;
      grp.append(svg('text', { x: anchorEnd ? x1 : x0, y: ly + 26, 'text-anchor': anchorEnd ? 'end' : 'start', class: 'bar-label' }, label));
    }
    out.append(grp);
  });
  if (loose.length) out.append(svg('text', { x: 4, y: y('other') + 13, class: 'lane-label' }, 'other'));
  for (const s of snaps) {
    const kind = s.kind || 'unknown';
    const locked = !!(s.lock && ms(s.lock.until) > now);
    out.append(svg('circle', { class: `snapshot${locked ? ' locked' : ''}`, 'data-kind': kind, 'data-locked': locked ? 'true' : null, 'data-snapshot': s.id,
      cx: x(ms(s.time)), cy: y(known.has(s.generation) ? s.generation : 'other') + 9, r: 5 },
    svg('title', {}, `${kind} snapshot ${shortId(s.id)} at ${fmtTime(s.time)}${locked ? `, locked (${s.lock.mode})` : ''}`)));
  }
  timeAxis(out, x, t0, t1, H - axis + 4, left, W - right);
  return out;
}

function legend() {
  return el('ul', { class: 'legend', 'aria-label': 'Legend' },
    KINDS.map((k) => el('li', {}, el('span', { class: `swatch kind-${k}`, 'aria-hidden': 'true' }), `${k} snapshot`)),
    el('li', {}, el('span', { class: 'swatch ring', 'aria-hidden': 'true' }), 'locked snapshot (ring)'),
    el('li', {}, el('span', { class: 'swatch bar-running', 'aria-hidden': 'true' }), 'running generation'),
    el('li', {}, el('span', { class: 'swatch bar-stopped', 'aria-hidden': 'true' }), 'stopped generation'),
    el('li', {}, el('span', { class: 'swatch bar-spot', 'aria-hidden': 'true' }), 'Spot interruption'));
}

function checkDone(what) {
  return (r) => {
    if (!r.passed) throw new Error(`${what} failed${r.error ? `: ${r.error}` : ''} (snapshot ${shortId(r.snapshot)}).`);
    return `${what} passed: snapshot ${shortId(r.snapshot)} from ${r.source}, ${r.files} files (${fmtBytes(r.bytes)}) restored in ${fmtSecs(r.restore_seconds)}, canary healthy; RTO ${fmtSecs(r.rto_seconds)}, RPO ${fmtSecs(r.rpo_seconds)}.`;
  };
}

function claimActions(name, current) {
  const path = `/v1/claims/${enc(name)}`;
  const reason = el('select', { id: 'stop-reason' },
    el('option', { value: 'spot' }, 'spot (replaced)'), el('option', { value: 'health' }, 'health (replaced)'), el('option', { value: 'user' }, 'user (parks the claim)'));
  const restoreAt = el('input', { type: 'datetime-local', id: 'restore-at', step: 1, value: localInput(new Date()) });
  const forkName = el('input', { id: 'fork-name', autocomplete: 'off', spellcheck: 'false', placeholder: `${name}-copy` });
  const forkAt = el('input', { type: 'datetime-local', id: 'fork-at', step: 1 });
  const button = (action, text, handler) => {
    const b = el('button', { type: 'button', 'data-action': action }, text);
    b.addEventListener('click', () => handler(b));
    return b;
  };
  const when = (input, fallbackNow) => {
    if (!input.value) { if (fallbackNow) return new Date(); throw new Error('Choose a date and time first.'); }
    return new Date(input.value); // datetime-local reads as local time
  };
  const stop = button('stop', 'Stop task', (b) => {
    const task = current() && current().claim.task;
    if (!task) { flash(`${name} has no task to stop.`, false); return; }
    const r = reason.value;
    act(b, {
      ask: `Stop task ${shortTask(task)} of ${name} as a ${r} stop? ${r === 'user' ? 'A user stop parks the claim: no task replaces it.' : 'A new generation replaces it from its stop snapshot.'}`,
      run: () => post(`/v1/tasks/${enc(shortTask(task))}/stop`, { reason: r }),
      done: (a) => `Stopped task ${shortTask(a.task)} (${a.stop_code}).`,
    });
  });
  const backup = button('backup', 'Back up now', (b) => act(b, {
    start: `Taking a snapshot of ${name}…`, run: () => post(`${path}/backup`),
    done: (o) => {
      if (o.error || !o.snapshot) throw new Error(`No snapshot was taken: ${o.error || 'no reason given'}.`);
      return `Snapshot ${shortId(o.snapshot)} taken in ${fmtSecs(o.seconds)} (${o.consistency || 'unknown'}-consistent${o.hook_error ? `; quiesce failed: ${o.hook_error}` : ''}).`;
    },
  }));
  const verify = button('verify', 'Verify a restore', (b) => act(b, {
    start: `Verifying ${name}'s newest snapshot…`, run: () => post(`${path}/verify`), done: checkDone('Verification'),
  }));
  const drill = button('drill', 'DR drill', (b) => act(b, {
    start: `Running a DR drill of ${name}…`, run: () => post(`${path}/drill`), done: checkDone('Drill'),
  }));
  const restore = button('restore', 'Restore', (b) => {
    let at;
    try { at = when(restoreAt, false); } catch (e) { flash(e.message, false); return; }
    act(b, {
      ask: `Restore ${name} to its newest snapshot at or before ${fmtTime(at)}? Its task stops and a new generation starts from that snapshot; what was written after it leaves the claim (the stop snapshot is still kept).`,
      run: () => post(`${path}/restore`, { at: at.toISOString() }),
      done: (a) => `Restoring ${a.claim} from snapshot ${shortId(a.snapshot)}.`,
    });
  });
  const fork = button('fork', 'Fork', (b) => {
    const newName = forkName.value.trim();
    if (!newName) { flash('Name the new claim first.', false); return; }
    const at = when(forkAt, true);
    act(b, {
      run: () => post(`${path}/fork`, { new: newName, at: at.toISOString() }),
      done: (a) => `Forked ${a.fork_of} as ${a.claim} from snapshot ${shortId(a.snapshot)}.`,
    });
  });
  const field = (label, input) => el('label', { class: 'field' }, el('span', {}, label), input);
  return el('section', { class: 'actions', 'aria-labelledby': 'actions-title' },
    el('h2', { id: 'actions-title' }, 'Actions'),
    el('div', { class: 'action' }, field('Stop reason', reason), stop),
    el('div', { class: 'action' }, backup, verify, drill),
    el('div', { class: 'action' }, field('Restore to (local time)', restoreAt), restore),
    el('div', { class: 'action' }, field('New claim name', forkName), field('From the point at (empty: now)', forkAt), fork));
}

/* ---------- #/events ---------- */

function setOptions(select, values, all) {
  const key = values.join('\n');
  if (select.dataset.key === key) return;
  select.dataset.key = key;
  const keep = select.value;
  select.replaceChildren(el('option', { value: '' }, all), ...values.map((v) => el('option', { value: v }, v)));
  select.value = values.includes(keep) ? keep : '';
}

function eventsView(root) {
  const claimSel = el('select', { id: 'event-claim' });
  const kindSel = el('select', { id: 'event-kind' });
  const box = el('div');
  let claimNames = [];
  root.append(el('h1', { tabindex: -1 }, 'Events'),
    el('div', { class: 'filters' },
      el('label', { class: 'field' }, el('span', {}, 'Claim'), claimSel),
      el('label', { class: 'field' }, el('span', {}, 'Kind'), kindSel)), box);
  const show = () => {
    const uniq = (xs) => [...new Set(xs)].sort();
    setOptions(claimSel, uniq(claimNames.concat(events.list.map((e) => e.claim).filter(Boolean))), 'All claims');
    setOptions(kindSel, uniq(events.list.map((e) => e.kind)), 'All kinds');
    const c = claimSel.value; const k = kindSel.value;
    const list = events.list.filter((e) => (!c || e.claim === c) && (!k || e.kind === k)).slice(-500).reverse();
    render(box, [events.loaded, c, k, list.map((e) => e.seq)], () => [
      el('p', { class: 'meta' }, events.loaded ? `Newest first, live; ${list.length} shown of the newest ${events.list.length} events.` : 'Loading the event log…'),
      eventTable('events', 'Events, newest first', list)]);
  };
  claimSel.addEventListener('change', show);
  kindSel.addEventListener('change', show);
  onEvents(show);
  show();
  every(0, async () => { claimNames = (await api('/v1/claims')).map((c) => c.name); show(); });
}

/* ---------- #/backups ---------- */

// A horizontal bar chart of durations against an objective each, and the
// same figures as a table.
function barChart(id, title, rows) {
  const W = 640; const labelW = 170; const valueW = 90; const bar = 14; const gap = 10;
  const max = Math.max(1e-6, ...rows.flatMap((r) => [r.value || 0, r.objective || 0]));
  const x = (v) => labelW + (v / max) * (W - labelW - valueW);
  const H = Math.max(1, rows.length) * (bar + gap) + gap;
  const met = (r) => (r.value === null || r.value === undefined || !r.objective ? null : r.value <= r.objective);
  const said = rows.map((r) => `${r.label}: ${fmtSecs(r.value)}${r.objective ? ` against ${fmtSecs(r.objective)}` : ''}`).join('; ');
  const chart = svg('svg', { id, role: 'img', 'aria-label': `${title}. ${said || 'No data.'}`, viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: 'bars' });
  rows.forEach((r, i) => {
    const y = gap + i * (bar + gap);
    chart.append(svg('text', { x: 0, y: y + bar - 3, class: 'lane-label' }, r.label));
    if (Number.isFinite(r.value)) {
      const width = Math.max(1, x(r.value) - labelW);
      chart.append(svg('rect', { x: labelW, y, width, height: bar, class: met(r) === false ? 'over' : 'within' }));
    }
    if (r.objective) chart.append(svg('line', { x1: x(r.objective), x2: x(r.objective), y1: y - 3, y2: y + bar + 3, class: 'objective' }));
    chart.append(svg('text', { x: W - valueW + 6, y: y + bar - 3, class: 'tick' }, Number.isFinite(r.value) ? fmtSecs(r.value) : 'none'));
  });
  return el('figure', { class: 'chart' },
    el('figcaption', {}, title, el('span', { class: 'meta' }, ' (bar: measured; line: objective)')),
    el('div', { class: 'chart-wrap' }, chart),
    table(`${id}-table`, title, ['Claim', 'Measured', 'Objective', 'Within objective'],
      rows.map((r) => row({ 'data-claim': r.claim, 'data-row': r.label }, [
        r.label, Number.isFinite(r.value) ? fmtSecs(r.value) : 'none', fmtSecs(r.objective),
        met(r) === null ? '—' : met(r) ? 'yes' : 'no']))));
}

// The event kinds the history is drawn from.
const CHECK_EVENTS = ['dr-drill', 'dr-drill-failed', 'restore-verified', 'restore-verify-failed'];
const HISTORY_EVENTS = new Set([...CHECK_EVENTS, 'backup-taken', 'backup-failed', 'replicated']);
const dataOf = (e) => (e.data && typeof e.data === 'object' ? e.data : {});
const secs = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : null);

// One claim's history as plain data (also the key that decides a redraw):
// its checks (a DrillReport each), the gaps between its snapshots, its
// failed scheduled snapshots and its copies to replicas, oldest first.
function historyOf(name, report, snaps) {
  const mine = events.list.filter((e) => e.claim === name && HISTORY_EVENTS.has(e.kind));
  const checks = mine.filter((e) => CHECK_EVENTS.includes(e.kind)).map((e) => {
    const d = dataOf(e);
    return { t: ms(d.started_at) || ms(e.time), kind: d.kind || (e.kind.startsWith('dr-') ? 'drill' : 'verify'), source: d.source || '—',
      rto: secs(d.rto_seconds), rpo: secs(d.rpo_seconds), objectives: d.objectives || {}, passed: d.passed ?? !e.kind.endsWith('failed'), error: d.error || null };
  }).filter((c) => Number.isFinite(c.t)).sort((a, b) => a.t - b.t);
  const took = new Map(mine.filter((e) => e.kind === 'backup-taken').map((e) => [dataOf(e).snapshot, dataOf(e)]));
  const done = (snaps || []).filter((s) => !s.pending).sort((a, b) => ms(a.time) - ms(b.time));
  // The newest 100 gaps, and the failures since the first of them.
  const gaps = done.slice(1).map((s, i) => ({ t: ms(s.time), gap: (ms(s.time) - ms(done[i].time)) / 1000, id: s.id, kind: s.kind || 'unknown', outcome: took.get(s.id) || null })).slice(-100);
  const from = gaps.length ? gaps[0].t : -Infinity;
  const failures = mine.filter((e) => e.kind === 'backup-failed').map((e) => ({ t: ms(dataOf(e).time) || ms(e.time), seconds: secs(dataOf(e).seconds), error: dataOf(e).error || e.message }))
    .filter((f) => Number.isFinite(f.t) && f.t >= from).slice(-50);
  const replications = mine.filter((e) => e.kind === 'replicated').map((e) => ({ time: e.time, ...dataOf(e) })).slice(-20);
  // The objectives of today's policy; a claim no longer in the report keeps those of its newest check.
  const last = checks[checks.length - 1];
  const objectives = report ? report.objectives : (last && last.objectives) || {};
  return { name, objectives, checks, gaps, failures, replications, replicas: report ? Object.keys(report.replicas || {}) : [] };
}

// A chart over time: one panel per measure, each on its own seconds scale
// (an RPO of hours would flatten an RTO of seconds) with its objective as a
// dashed line, over one shared time axis. A mark is a point (circle, or
// square for a drill) or a bar; one with no value is a cross at the top.
function historyChart(claim, series, said, panels) {
  const W = 720; const left = 78; const right = 16; const ph = 90; const above = 24; const axis = 28;
  const times = panels.flatMap((p) => p.marks.map((m) => m.t)).filter(Number.isFinite);
  const pad = Math.max(1000, (Math.max(...times) - Math.min(...times)) * 0.04);
  const t0 = Math.min(...times) - pad; const t1 = Math.max(...times) + pad;
  const x = (t) => left + ((t - t0) / (t1 - t0)) * (W - left - right);
  const H = panels.length * (ph + above) + axis;
  const out = svg('svg', { class: 'history-chart', 'data-claim': claim, 'data-series': series, role: 'img', 'aria-label': said, viewBox: `0 0 ${W} ${H}`, width: W, height: H });
  panels.forEach((p, i) => {
    const top = above + i * (ph + above); const bottom = top + ph;
    const max = Math.max(1e-3, ...p.marks.map((m) => m.value || 0), p.objective || 0) * 1.1;
    const y = (v) => bottom - (v / max) * ph;
    const barW = Math.max(2, Math.min(14, ((W - left - right) / (p.marks.length + 1)) * 0.6));
    out.append(svg('text', { x: left, y: top - 8, class: 'panel-label' }, p.name),
      svg('line', { x1: left, x2: left, y1: top, y2: bottom, class: 'axis' }),
      svg('line', { x1: left, x2: W - right, y1: bottom, y2: bottom, class: 'grid' }),
      svg('text', { x: left - 6, y: top + 8, 'text-anchor': 'end', class: 'tick' }, fmtSecs(max)),
      svg('text', { x: left - 6, y: bottom, 'text-anchor': 'end', class: 'tick' }, '0'));
    if (p.objective) {
      out.append(svg('line', { x1: left, x2: W - right, y1: y(p.objective), y2: y(p.objective), class: 'objective' }),
        svg('text', { x: W - right, y: y(p.objective) - 4, 'text-anchor': 'end', class: 'tick objective-label' }, `objective ${fmtSecs(p.objective)}`));
    }
    for (const m of p.marks) {
      const cx = x(m.t); const cls = `mark ${m.failed ? 'failed' : m.over ? 'over' : 'passed'}`;
      const title = svg('title', {}, m.title);
      if (m.value === null) out.append(svg('path', { d: `M${cx - 4},${top} l8,8 m0,-8 l-8,8`, class: 'mark missing' }, title));
      else if (m.bar) out.append(svg('rect', { x: cx - barW / 2, y: y(m.value), width: barW, height: Math.max(1, bottom - y(m.value)), class: `${cls} bar` }, title));
      else if (m.square) out.append(svg('rect', { x: cx - 4, y: y(m.value) - 4, width: 8, height: 8, class: cls }, title));
      else out.append(svg('circle', { cx, cy: y(m.value), r: 4.5, class: cls }, title));
    }
  });
  timeAxis(out, x, t0, t1, H - axis + 4, left, W - right);
  return el('div', { class: 'chart-wrap' }, out);
}

const swatch = (cls, text) => el('li', {}, el('span', { class: `swatch ${cls}`, 'aria-hidden': 'true' }), text);
const checkWhat = (c) => `${c.kind === 'drill' ? 'drill' : 'verification'} from ${c.source}`;

function drillHistory(h) {
  const title = 'Drill and verification RTO and RPO over time';
  if (!h.checks.length) return el('p', { class: 'none' }, 'No drill or verification yet.');
  const o = h.objectives;
  const marks = (field) => h.checks.map((c) => ({ t: c.t, value: c[field], failed: !c.passed, square: c.kind === 'drill',
    title: `${checkWhat(c)} at ${fmtTime(c.t)}: ${field.toUpperCase()} ${fmtSecs(c[field])}, ${c.passed ? 'passed' : `failed${c.error ? `: ${c.error}` : ''}`}` }));
  const failed = h.checks.filter((c) => !c.passed).length;
  const said = `${title} for claim ${h.name}: ${h.checks.length} check${h.checks.length === 1 ? '' : 's'} from ${fmtTime(h.checks[0].t)} to ${fmtTime(h.checks[h.checks.length - 1].t)}, ${failed} failed; `
    + `RTO objective ${o.rto ? fmtSecs(o.rto) : 'none'}, RPO objective ${o.rpo ? fmtSecs(o.rpo) : 'none'}. The table below holds the same figures.`;
  return el('figure', { class: 'chart' }, el('figcaption', {}, title),
    historyChart(h.name, 'drills', said, [{ name: 'RTO (start to a healthy canary)', objective: o.rto, marks: marks('rto') },
      { name: 'RPO (age of the snapshot restored)', objective: o.rpo, marks: marks('rpo') }]),
    el('ul', { class: 'legend', 'aria-label': 'Legend' }, swatch('mark-verify', 'verification'), swatch('mark-drill', 'drill'),
      swatch('mark-failed', 'failed check (hollow)'), swatch('mark-missing', 'failed, nothing measured (cross)'), swatch('line-objective', 'objective')),
    table({ class: 'history-table', 'data-claim': h.name, 'data-series': 'drills' }, `${title}, claim ${h.name}, newest first`,
      ['Time', 'Kind', 'Source', 'RTO', 'RPO', 'Objectives', 'Outcome'],
      h.checks.slice().reverse().map((c) => row({ 'data-time': new Date(c.t).toISOString(), class: c.passed ? null : 'bad' }, [
        timeEl(new Date(c.t).toISOString()), c.kind, c.source, fmtSecs(c.rto), fmtSecs(c.rpo),
        `RTO ${c.objectives.rto ? fmtSecs(c.objectives.rto) : 'none'}, RPO ${c.objectives.rpo ? fmtSecs(c.objectives.rpo) : 'none'}`,
        c.passed ? 'passed' : `failed${c.error ? `: ${c.error}` : ''}`]))));
}

function gapHistory(h) {
  const title = 'Time between snapshots (the data a loss could cost) over time';
  if (!h.gaps.length && !h.failures.length) return el('p', { class: 'none' }, 'Fewer than two snapshots: no gap to show yet.');
  const rpo = h.objectives.rpo;
  const over = (g) => !!rpo && g.gap > rpo;
  const marks = h.gaps.map((g) => ({ t: g.t, value: g.gap, bar: true, over: over(g), title: `${g.kind} snapshot ${shortId(g.id)} at ${fmtTime(g.t)}: ${fmtSecs(g.gap)} after the previous` }))
    .concat(h.failures.map((f) => ({ t: f.t, value: null, title: `scheduled snapshot failed at ${fmtTime(f.t)}: ${f.error}` })));
  const longest = Math.max(0, ...h.gaps.map((g) => g.gap));
  const said = `${title} for claim ${h.name}: ${h.gaps.length} gap${h.gaps.length === 1 ? '' : 's'}, the longest ${fmtSecs(longest)}, ${h.gaps.filter(over).length} over the RPO objective (${rpo ? fmtSecs(rpo) : 'none'}); `
    + `${h.failures.length} failed scheduled snapshot${h.failures.length === 1 ? '' : 's'}. The table below holds the same figures.`;
  const rows = h.gaps.map((g) => ({ t: g.t, cells: [el('code', { title: g.id }, shortId(g.id)), g.kind, fmtSecs(g.gap), rpo ? (over(g) ? 'no' : 'yes') : '—',
    g.outcome ? `taken in ${fmtSecs(g.outcome.seconds)}${g.outcome.hook_error ? `; quiesce failed: ${g.outcome.hook_error}` : ''}` : '—'], bad: over(g) }))
    .concat(h.failures.map((f) => ({ t: f.t, cells: ['none', 'scheduled', '—', '—', `failed after ${fmtSecs(f.seconds)}: ${f.error}`], bad: true })))
    .sort((a, b) => b.t - a.t);
  return el('figure', { class: 'chart' }, el('figcaption', {}, title),
    historyChart(h.name, 'snapshot-gaps', said, [{ name: 'Gap since the previous snapshot', objective: rpo, marks }]),
    el('ul', { class: 'legend', 'aria-label': 'Legend' }, swatch('bar-within', 'within the RPO objective'), swatch('bar-over', 'over it'),
      swatch('mark-missing', 'failed scheduled snapshot (cross)'), swatch('line-objective', 'RPO objective')),
    table({ class: 'history-table', 'data-claim': h.name, 'data-series': 'snapshot-gaps' }, `${title}, claim ${h.name}, newest first`,
      ['Time', 'Snapshot', 'Kind', 'Gap since the previous', 'Within the RPO objective', 'Outcome'],
      rows.map((r) => row({ 'data-time': new Date(r.t).toISOString(), class: r.bad ? 'bad' : null }, [timeEl(new Date(r.t).toISOString()), ...r.cells]))));
}

// Lag is kept only as the replica's state now (the chart above): the log
// records copies, not lag, so the copies are what can be shown over time.
function replicaHistory(h) {
  if (!h.replications.length && !h.replicas.length) return null;
  return [el('p', { class: 'meta' }, 'Replica lag is not recorded over time: it is shown as current only, above. The copies to replicas:'),
    table({ class: 'history-table', 'data-claim': h.name, 'data-series': 'replicated' }, `Copies of claim ${h.name} to replicas, newest first`,
      ['Time', 'Replica', 'Copied', 'Forgotten'],
      h.replications.slice().reverse().map((r) => row({}, [timeEl(r.time), r.replica || '—', r.copied ?? '—', r.forgotten ?? '—'])))];
}

function claimHistory(h) {
  const empty = !h.checks.length && !h.gaps.length && !h.failures.length && !h.replications.length;
  return el('section', { class: 'history', 'data-claim': h.name, 'aria-label': `History of claim ${h.name}` },
    el('h3', {}, 'Claim ', el('a', { href: `#/claims/${enc(h.name)}` }, h.name)),
    empty ? el('p', { class: 'none' }, 'No history yet: no drill, verification, copy to a replica or second snapshot.')
      : [drillHistory(h), gapHistory(h), replicaHistory(h)]);
}

function backupsView(root) {
  const box = el('div');
  const history = el('div');
  root.append(el('h1', { tabindex: -1 }, 'Backups'), box, el('h2', {}, 'Over time'),
    el('p', { class: 'meta' }, `From the event log this page holds (its newest ${KEEP_EVENTS} events) and each claim's snapshots.`), history);
  let latest = null;
  const showHistory = () => {
    if (!latest) return;
    // Every claim with a policy, and any other with history in the log.
    const names = [...new Set(latest.report.map((c) => c.claim)
      .concat(events.list.filter((e) => e.claim && HISTORY_EVENTS.has(e.kind)).map((e) => e.claim).sort()))];
    const all = names.map((n) => historyOf(n, latest.report.find((c) => c.claim === n), latest.snaps.get(n)));
    render(history, [events.loaded, all], () => [events.loaded ? null : el('p', {}, 'Loading the event log…'),
      all.length ? all.map(claimHistory) : el('p', {}, 'No claim has a backup policy or any backup history.')]);
  };
  onEvents((batch) => { if (!batch.length || batch.some((e) => HISTORY_EVENTS.has(e.kind))) showHistory(); });
  every(5000, async () => {
    const report = await api('/v1/backups');
    // A claim deleted in between has no snapshots to show, not an error.
    const snaps = await Promise.all(report.map((c) => api(`/v1/claims/${enc(c.claim)}`).then((d) => d.snapshots, () => [])));
    latest = { report, snaps: new Map(report.map((c, i) => [c.claim, snaps[i]])) };
    showHistory();
    render(box, report, () => {
      if (!report.length) return el('p', {}, 'No claim has a backup policy ([service.backup] in berth.toml).');
      const age = report.map((c) => ({ claim: c.claim, label: c.claim, value: c.newest_snapshot ? c.newest_snapshot.age_seconds : null, objective: c.objectives.rpo }));
      const lag = report.flatMap((c) => Object.entries(c.replicas || {}).map(([n, r]) => (
        { claim: c.claim, label: `${c.claim} → ${n}`, value: r.state.lag, objective: c.objectives.rpo })));
      const checks = (field, key) => report.flatMap((c) => [['verify', c.last_verification], ['drill', c.last_drill]]
        .filter(([, d]) => d).map(([what, d]) => ({ claim: c.claim, label: `${c.claim} ${what}`, value: d[field], objective: c.objectives[key] })));
      return [
        table('backups', 'Backup status per claim', ['Claim', 'Schedule', 'Newest snapshot', 'Next due', 'Replicas', 'Verification', 'Last drill', 'Problems'],
          report.map((c) => row({ 'data-claim': c.claim, class: c.problems.length ? 'bad' : null }, [
            el('a', { href: `#/claims/${enc(c.claim)}` }, c.claim), c.schedule,
            c.newest_snapshot ? `${fmtSecs(c.newest_snapshot.age_seconds)} ago, ${c.newest_snapshot.kind || 'unknown'}${c.newest_snapshot.consistency ? `, ${c.newest_snapshot.consistency}` : ''}` : 'none',
            timeEl(c.next_due),
            Object.entries(c.replicas || {}).map(([n, r]) => el('div', {}, `${n}: lag ${fmtSecs(r.state.lag)}, RPO now ${fmtSecs(r.state.rpo_now)}${r.error ? ` (${r.error})` : ''}`)),
            [(c.verification && c.verification.status) || 'no schedule', c.last_verified ? [', passed ', timeEl(c.last_verified)] : ''],
            c.last_drill ? `${c.last_drill.passed ? 'passed' : 'failed'}: RTO ${fmtSecs(c.last_drill.rto_seconds)}, RPO ${fmtSecs(c.last_drill.rpo_seconds)}` : 'none',
            c.problems.length ? el('ul', {}, c.problems.map((p) => el('li', {}, p))) : 'none']))),
        barChart('chart-age', 'Newest snapshot age against the RPO objective', age),
        barChart('chart-lag', 'Replica lag against the RPO objective', lag),
        barChart('chart-rto', 'Last verification and drill RTO against the RTO objective', checks('rto_seconds', 'rto')),
        barChart('chart-rpo', 'Last verification and drill RPO against the RPO objective', checks('rpo_seconds', 'rpo')),
      ];
    });
  });
}

/* ---------- #/services/NAME ---------- */

// KEY=VALUE lines set variables; -KEY lines remove one; # starts a comment.
function parseEnv(text) {
  const env = {}; const unset = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    if (line.startsWith('-')) { unset.push(line.slice(1).trim()); continue; }
    const i = line.indexOf('=');
    if (i <= 0) throw new Error(`"${line}": write KEY=VALUE, or -KEY to remove KEY.`);
    env[line.slice(0, i).trim()] = line.slice(i + 1);
  }
  return { env, unset };
}
const imageOf = (def) => (def ? (def.container && def.container.image) || (def.env && def.env.BERTH_IMAGE) || '—' : '—');

function serviceView(root, name) {
  const facts = el('div');
  const rollout = el('div', { id: 'rollout', 'aria-live': 'polite' });
  const revisions = el('div');
  const count = el('input', { type: 'number', id: 'scale-count', min: 0, max: 1000, required: true, inputmode: 'numeric' });
  const image = el('input', { id: 'deploy-image', autocomplete: 'off', spellcheck: 'false', placeholder: 'localhost/app:2' });
  const envText = el('textarea', { id: 'deploy-env', rows: 4, spellcheck: 'false', placeholder: 'APP_VERSION=2\n-OLD_FLAG' });
  let desired = null;
  let edited = false; // the user's number wins over the polled one
  count.addEventListener('input', () => { edited = true; });
  const scaleBtn = el('button', { type: 'submit', 'data-action': 'scale' }, 'Scale');
  const deployBtn = el('button', { type: 'submit', 'data-action': 'deploy' }, 'Deploy');
  const scaleForm = el('form', { id: 'scale-form', class: 'action' },
    el('label', { class: 'field' }, el('span', {}, 'Desired count'), count), scaleBtn);
  const deployForm = el('form', { id: 'deploy-form', class: 'stack' },
    el('label', { class: 'field' }, el('span', {}, 'New image (optional)'), image),
    el('label', { class: 'field' }, el('span', {}, 'Environment changes: KEY=VALUE lines; -KEY removes KEY'), envText), deployBtn);
  scaleForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const n = Number(count.value);
    if (!Number.isInteger(n) || n < 0) { flash('The count is a whole number, 0 or more.', false); return; }
    // Unknown current count: ask, it may be a scale-in.
    const shrink = desired === null || n < desired;
    act(scaleBtn, {
      ask: shrink ? `Scale ${name} in from ${desired ?? '?'} to ${n}? ${n === 0 ? 'Every claim is parked and the service stops.' : 'The highest claims are parked with a snapshot.'}` : null,
      run: () => post(`/v1/services/${enc(name)}/scale`, { count: n }),
      done: (a) => { edited = false; refresh(); return `${a.service}: desired count ${a.desired_count}.`; },
    });
  });
  deployForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    let changes;
    try { changes = parseEnv(envText.value); } catch (e) { flash(e.message, false); return; }
    const body = { env: changes.env, unset_env: changes.unset };
    if (image.value.trim()) body.image = image.value.trim();
    const keys = Object.keys(body.env);
    const said = [body.image && `image ${body.image}`, keys.length && `set ${keys.join(', ')}`,
      body.unset_env.length && `remove ${body.unset_env.join(', ')}`].filter(Boolean);
    if (!said.length) { flash('Nothing to deploy: give an image or environment changes.', false); return; }
    act(deployBtn, {
      ask: `Deploy a new revision of ${name} (${said.join('; ')})? Each claim's task is stopped and replaced, one at a time; a failure rolls back.`,
      run: () => post(`/v1/services/${enc(name)}/deploy`, body),
      done: (r) => { refresh(); return `Deploying revision ${r.deployment ? r.deployment.to : r.active} of ${name}; the rollout shows below.`; },
    });
  });
  root.append(el('h1', { tabindex: -1 }, 'Service ', el('code', {}, name)), facts,
    el('p', {}, el('a', { href: `#/files/${enc(name)}` }, `Files of ${name}`)),
    el('h2', {}, 'Scale'), scaleForm, el('h2', {}, 'Deploy'), deployForm,
    el('h2', {}, 'Rollout'), rollout, el('h2', {}, 'Revisions'), revisions);
  // Every second: a rollout moves a claim in about that time.
  const refresh = every(1000, async () => {
    const [record, status] = await Promise.all([api(`/v1/services/${enc(name)}`), api('/v1/status')]);
    const s = status.services.find((x) => x.name === name);
    desired = s ? s.desired_count : null;
    if (!edited && document.activeElement !== count && desired !== null) count.value = desired;
    const active = record.revisions.find((r) => r.revision === record.active);
    render(facts, [s, record.active, imageOf(active)], () => el('dl', { class: 'facts' },
      fact('Desired', desired ?? '—'), fact('Running', s ? s.running : '—'), fact('Active revision', record.active), fact('Image', imageOf(active))));
    const d = record.deployment;
    rollout.dataset.state = d ? d.state : 'none';
    render(rollout, d, () => (d ? rolloutView(d) : el('p', {}, 'No deployment yet.')));
    render(revisions, [record.revisions, record.active], () => table('revisions', 'Task definition revisions, newest first', ['Revision', 'Image', 'Environment', 'Command'],
      record.revisions.slice().reverse().map((r) => row({ 'data-revision': r.revision, class: r.revision === record.active ? 'active' : null }, [
        r.revision === record.active ? `${r.revision} (active)` : r.revision, imageOf(r),
        Object.entries(r.env || {}).map(([k, v]) => el('div', {}, el('code', {}, `${k}=${v}`))),
        r.command && r.command.length ? el('code', {}, r.command.join(' ')) : 'default']))));
  });
}

function rolloutView(d) {
  return el('dl', { class: 'facts' },
    fact('Revision', `${d.from} → ${d.to}`), fact('State', badge(d.state)),
    fact('Moving', d.current ? [el('a', { href: `#/claims/${enc(d.current.claim)}` }, d.current.claim), ' since ', timeEl(d.current.since)] : '—'),
    fact('Moved', d.moved.length ? d.moved.join(', ') : 'none yet'),
    fact('Started', timeEl(d.started_at)), fact('Finished', timeEl(d.finished_at)),
    d.reason ? fact('Why it rolled back', d.reason) : null);
}

/* ---------- #/files/SVC ---------- */

function filesView(root, svc) {
  const base = `/v1/services/${enc(svc)}/http/files`;
  const box = el('div');
  const file = el('input', { type: 'file', id: 'upload-file', multiple: true });
  const upload = el('button', { type: 'submit', 'data-action': 'upload' }, 'Upload');
  const form = el('form', { id: 'upload-form', class: 'action' }, el('label', { class: 'field' }, el('span', {}, 'File'), file), upload);
  root.append(el('h1', { tabindex: -1 }, 'Files of ', el('code', {}, svc)),
    el('p', { class: 'meta' }, 'Through the load balancer, as a client sees them.'), form, box);
  const refresh = every(5000, async () => {
    const listing = await api(base);
    render(box, listing, () => [
      listing.peers_unavailable && listing.peers_unavailable.length ? el('p', { class: 'warn' }, `Not answering: ${listing.peers_unavailable.join(', ')}; their files are missing here.`) : null,
      listing.next_cursor ? el('p', { class: 'warn' }, 'More files exist than one page shows.') : null,
      table('files', `${listing.count} file${listing.count === 1 ? '' : 's'}`, ['Name', 'Size', 'Modified', 'Download', 'Delete'],
        listing.files.map((f) => row({ 'data-file': f.name }, [
          f.name, fmtBytes(f.size), timeEl(f.modified),
          el('a', { 'data-download': f.name, href: `${base}/${enc(f.name)}`, download: f.name, 'aria-label': `Download ${f.name}` }, 'Download'),
          deleteButton(base, f.name, () => refresh())]))),
    ]);
  });
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const files = [...file.files];
    if (!files.length) { flash('Choose a file first.', false); return; }
    act(upload, {
      start: `Uploading ${files.map((f) => f.name).join(', ')}…`,
      run: async () => { for (const f of files) await api(`${base}/${enc(f.name)}`, { method: 'PUT', body: f }); return files; },
      done: (fs) => { file.value = ''; refresh(); return `Uploaded ${fs.map((f) => `${f.name} (${fmtBytes(f.size)})`).join(', ')}.`; },
    });
  });
}

function deleteButton(base, name, refresh) {
  const b = el('button', { type: 'button', 'data-action': 'delete-file', class: 'danger', 'aria-label': `Delete ${name}` }, 'Delete');
  b.addEventListener('click', () => act(b, {
    ask: `Delete ${name}? It is gone from the service (snapshots taken before keep it).`,
    run: () => api(`${base}/${enc(name)}`, { method: 'DELETE' }),
    done: () => { refresh(); return `Deleted ${name}.`; },
  }));
  return b;
}

/* ---------- the router ---------- */

const ROUTES = [
  [/^#\/?$/, overview, () => 'Overview'],
  [/^#\/claims$/, claimsView, () => 'Claims'],
  [/^#\/claims\/([^/]+)$/, claimView, (n) => `Claim ${n}`],
  [/^#\/events$/, eventsView, () => 'Events'],
  [/^#\/backups$/, backupsView, () => 'Backups'],
  [/^#\/services\/([^/]+)$/, serviceView, (n) => `Service ${n}`],
  [/^#\/files\/([^/]+)$/, filesView, (n) => `Files of ${n}`],
];

function route(first) {
  const hash = location.hash || '#/';
  // An in-page anchor (the skip link) is no route: keep the view.
  if (!hash.startsWith('#/') && hash !== '#') { if (!first) return; }
  view.timers.forEach(clearInterval);
  view = { timers: [], subs: [] };
  const main = $('#main');
  main.replaceChildren();
  if (!first) flash('', true); // an outcome belongs to the page it happened on
  const found = ROUTES.map(([re, fn, title]) => [hash.match(re), fn, title]).find(([m]) => m);
  if (found) {
    const args = found[0].slice(1).map(decodeURIComponent);
    document.title = `${found[2](...args)} · berth console`;
    found[1](main, ...args);
  } else if (hash.startsWith('#/')) {
    document.title = 'Not found · berth console';
    main.append(el('h1', { tabindex: -1 }, 'No such page'), el('p', {}, el('a', { href: '#/' }, 'Back to the overview')));
  } else {
    overview(main);
  }
  markNav();
  // Move the focus to the new page's heading, so a screen reader says where it is.
  if (!first) { const h1 = main.querySelector('h1'); if (h1) h1.focus(); }
}

window.addEventListener('hashchange', () => route(false));
route(true);
startEvents();
// The nav lists every service; the overview keeps it current.
api('/v1/status').then((s) => updateNav(s.services)).catch((e) => flash(e.message, false));
