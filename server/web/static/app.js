// LLM4Rec web page: builds a request from a history (catalog search or a user's live history),
// text, an image and a voice recording; shows the ranked list with its explanations, the
// retrieved context and how the list was made; posts feedback and shows the list change. It
// calls the HTTP API (server/openapi.json) with the key typed in, and has no dependencies.

const $ = (id) => document.getElementById(id);

// Limits checked before anything is sent; the server checks them again (its defaults).
const MAX_IMAGE_BYTES = 8 << 20; // max_image_bytes
const WAV_RATE = 16000; // the bundles' audio sample rate (the server resamples any rate)
const MAX_RECORD_SECONDS = 10; // the audio encoder keeps the first 10 s
const MIN_RECORD_SECONDS = 0.2;
const SHOWN_HISTORY = 30; // newest history items listed with their titles
const SEARCH_LIMIT = 10;

const state = {
  live: [], // the user's history as the server has it (GET /v1/users/{id})
  picks: [], // items added from the catalog search (sent as the request's history)
  image: null, // {b64, name, url}
  audio: null, // {b64, url, seconds}
  last: null, // the last recommend answer
};
const catalog = new Map(); // item id -> {title, categories}

// ---- API ----

class APIError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

async function api(method, path, body) {
  const headers = {};
  const key = $('api-key').value.trim();
  if (key) headers.Authorization = 'Bearer ' + key;
  const init = { method, headers };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (e) {
    throw new APIError(0, 'network', e.message);
  }
  let data = null;
  try {
    data = await resp.json();
  } catch {
    // not JSON: the status says enough
  }
  if (!resp.ok) {
    const err = (data && data.error) || {};
    throw new APIError(resp.status, err.code || 'http_' + resp.status, err.message || resp.statusText,
      resp.headers.get('Retry-After'));
  }
  return data;
}

// explainError says in words what went wrong, with the server's own message.
function explainError(e) {
  if (!(e instanceof APIError)) return e.message;
  const said = e.message ? ` The server said: “${e.message}”.` : '';
  switch (e.status) {
    case 0: return 'The server could not be reached: is it running?';
    case 401: return 'The server needs a valid API key: enter it in the “API key” field at the top.' + said;
    case 403: return 'This API key may not do that.' + said;
    case 404: return 'Not found.' + said;
    case 408: case 504: return 'The server took too long to answer: try again.' + said;
    case 413: return 'That is too large for the server.' + said;
    case 422: return 'The server could not use that.' + said;
    case 429: case 503:
      return 'The server is busy' + (e.retryAfter ? `: try again in ${e.retryAfter} s.` : ': try again shortly.') + said;
  }
  if (e.status >= 500) return `The server failed to answer (error ${e.status}).` + said;
  return `The server refused the request (error ${e.status}, ${e.code}).` + said;
}

function showError(what, e) {
  const box = $('error');
  box.textContent = `${what}: ${typeof e === 'string' ? e : explainError(e)}`;
  box.hidden = false;
}

function clearError() {
  $('error').hidden = true;
  $('error').textContent = '';
}

function say(text) {
  $('status').textContent = text;
}

// busy marks a button as working while its call runs; the caller ignores it meanwhile
// (isBusy). The button stays enabled, so keyboard focus stays on it.
async function busy(button, fn) {
  button.setAttribute('aria-busy', 'true');
  try {
    return await fn();
  } finally {
    button.removeAttribute('aria-busy');
  }
}

const isBusy = (button) => button.getAttribute('aria-busy') === 'true';

// ---- small helpers ----

function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

function remember(items) {
  for (const it of items || []) {
    if (it && it.item_id) catalog.set(it.item_id, { title: it.title, categories: it.categories || [] });
  }
}

const titleOf = (id) => (catalog.get(id) || {}).title || `item ${id}`;
const categoriesOf = (id) => ((catalog.get(id) || {}).categories || []).join(', ');

// resolve fetches the titles of items not seen yet (GET /v1/items/{id}), at most 8 at a time.
async function resolve(ids) {
  const missing = [...new Set(ids)].filter((id) => !catalog.has(id));
  for (let i = 0; i < missing.length; i += 8) {
    const got = await Promise.all(missing.slice(i, i + 8).map((id) =>
      api('GET', '/v1/items/' + encodeURIComponent(id)).catch(() => null)));
    remember(got.filter(Boolean));
  }
}

function newID() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
}

function userID() {
  let id = $('user-id').value.trim();
  if (!id) {
    id = 'web-' + newID().slice(0, 8);
    $('user-id').value = id;
    sessionStorage.setItem('llm4rec.user', id);
  }
  return id;
}

function fileToBase64(blob) {
  return new Promise((ok, fail) => {
    const r = new FileReader();
    r.onload = () => ok(String(r.result).slice(String(r.result).indexOf(',') + 1));
    r.onerror = () => fail(r.error);
    r.readAsDataURL(blob);
  });
}

const mib = (n) => (n / (1 << 20)).toFixed(1) + ' MiB';

// ---- history ----

async function loadUser(quiet) {
  const id = userID();
  try {
    const u = await api('GET', '/v1/users/' + encodeURIComponent(id));
    state.live = u.history || [];
    await resolve(state.live.slice(-SHOWN_HISTORY));
    if (!quiet) say(`Loaded ${state.live.length} items of ${id}'s history.`);
  } catch (e) {
    if (e.status === 404 && e.code === 'not_found') {
      state.live = [];
      if (!quiet) say(`No feedback recorded for ${id} yet: add items from the catalog search.`);
    } else {
      throw e;
    }
  }
  renderHistory();
}

function renderHistory() {
  const all = [...state.live.map((id) => ({ id, live: true })), ...state.picks.map((id) => ({ id, live: false }))];
  $('history-count').textContent = String(all.length);
  const list = $('history');
  list.replaceChildren();
  const shown = all.slice(-SHOWN_HISTORY);
  if (all.length > shown.length) {
    list.append(el('li', { class: 'older', text: `… and ${all.length - shown.length} older items` }));
  }
  const newest = new Map(shown.map(({ id }, i) => [id, i]));
  shown.forEach(({ id, live }, i) => {
    // an id listed twice has its anchor on the newest, the one explanations cite
    const anchor = newest.get(id) === i ? { id: 'hist-' + id, tabindex: '-1' } : {};
    const li = el('li', anchor,
      el('span', {},
        el('span', { class: 'title', text: titleOf(id) }), ' ',
        el('span', { class: 'cats', text: categoriesOf(id) }), ' ',
        el('span', { class: 'tag', text: live ? 'feedback' : 'added' })));
    if (!live) {
      li.append(el('button', { type: 'button', class: 'secondary', 'aria-label': `Remove ${titleOf(id)} from the history`,
        text: 'Remove', onclick: () => { state.picks = state.picks.filter((x) => x !== id); renderHistory(); renderSearchState(); } }));
    }
    list.append(li);
  });
  // the newest are the ones that matter: keep them in view
  list.scrollTop = list.scrollHeight;
}

async function search(ev) {
  ev.preventDefault();
  if (isBusy($('search'))) return;
  clearError();
  const q = $('search-q').value.trim();
  if (!q) {
    showError('Search', 'type a few words to search the catalog for.');
    $('search-q').focus();
    return;
  }
  await busy($('search'), async () => {
    try {
      const r = await api('GET', `/v1/items?q=${encodeURIComponent(q)}&limit=${SEARCH_LIMIT}`);
      remember(r.items);
      renderSearch(r.items);
    } catch (e) {
      showError('Search', e);
    }
  });
}

function renderSearch(items) {
  const list = $('search-results');
  list.replaceChildren();
  for (const it of items) {
    const add = el('button', { type: 'button', 'data-id': it.item_id, 'data-title': it.title, text: 'Add' });
    add.addEventListener('click', () => {
      if (add.getAttribute('aria-disabled') === 'true') return;
      state.picks.push(it.item_id);
      renderHistory();
      renderSearchState();
      say(`Added ${it.title} to the history.`);
    });
    list.append(el('li', {},
      el('span', {}, el('span', { class: 'title', text: it.title }), ' ',
        el('span', { class: 'cats', text: (it.categories || []).join(', ') })),
      add));
  }
  renderSearchState();
}

// renderSearchState marks the search results already in the history.
function renderSearchState() {
  const have = new Set([...state.live, ...state.picks]);
  for (const b of $('search-results').querySelectorAll('button[data-id]')) {
    const inHistory = have.has(b.dataset.id);
    b.textContent = inHistory ? 'Added' : 'Add';
    b.setAttribute('aria-disabled', String(inHistory));
    b.setAttribute('aria-label', inHistory ? `${b.dataset.title} is in the history` : `Add ${b.dataset.title} to the history`);
  }
}

// ---- image ----

async function takeImage(file) {
  clearError();
  if (!file) return;
  const fail = (msg) => {
    $('image').value = '';
    showError('Image', msg);
  };
  if (file.size > MAX_IMAGE_BYTES) return fail(`“${file.name}” is ${mib(file.size)}; the limit is ${mib(MAX_IMAGE_BYTES)}.`);
  if (file.size === 0) return fail(`“${file.name}” is empty.`);
  const head = new Uint8Array(await file.slice(0, 8).arrayBuffer());
  const jpeg = head[0] === 0xff && head[1] === 0xd8 && head[2] === 0xff;
  const png = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a].every((b, i) => head[i] === b);
  if (!jpeg && !png) return fail(`“${file.name}” is not a JPEG or PNG image.`);
  if (state.image) URL.revokeObjectURL(state.image.url);
  state.image = { b64: await fileToBase64(file), name: file.name, url: URL.createObjectURL(file) };
  $('preview').src = state.image.url;
  $('preview').alt = 'Preview of ' + file.name;
  $('image-caption').textContent = `${file.name}, ${(file.size / 1024).toFixed(0)} KiB, ${jpeg ? 'JPEG' : 'PNG'}`;
  $('image-figure').hidden = false;
  $('image-clear').hidden = false;
}

function clearImage() {
  if (state.image) URL.revokeObjectURL(state.image.url);
  state.image = null;
  $('image').value = '';
  $('preview').removeAttribute('src');
  $('image-figure').hidden = true;
  $('image-clear').hidden = true;
  $('image').focus();
}

// ---- voice ----

// encodeWAV returns mono samples in [-1, 1] as a 16-bit PCM WAV file at rate Hz.
export function encodeWAV(samples, rate) {
  const buf = new ArrayBuffer(44 + samples.length * 2);
  const v = new DataView(buf);
  const ascii = (at, s) => { for (let i = 0; i < s.length; i++) v.setUint8(at + i, s.charCodeAt(i)); };
  ascii(0, 'RIFF');
  v.setUint32(4, 36 + samples.length * 2, true);
  ascii(8, 'WAVE');
  ascii(12, 'fmt ');
  v.setUint32(16, 16, true); // fmt chunk size
  v.setUint16(20, 1, true); // PCM
  v.setUint16(22, 1, true); // mono
  v.setUint32(24, rate, true);
  v.setUint32(28, rate * 2, true); // byte rate
  v.setUint16(32, 2, true); // block align
  v.setUint16(34, 16, true); // bits per sample
  ascii(36, 'data');
  v.setUint32(40, samples.length * 2, true);
  for (let i = 0; i < samples.length; i++) {
    const s = Math.max(-1, Math.min(1, samples[i] || 0));
    v.setInt16(44 + i * 2, s < 0 ? Math.round(s * 0x8000) : Math.round(s * 0x7fff), true);
  }
  return buf;
}

// resample converts samples from one rate to another through an OfflineAudioContext (the
// browser's own resampler, with its anti-aliasing).
async function resample(samples, from, to) {
  if (from === to) return samples;
  const ctx = new OfflineAudioContext(1, Math.max(1, Math.round(samples.length * to / from)), to);
  const buf = ctx.createBuffer(1, samples.length, from);
  buf.copyToChannel(samples, 0);
  const src = ctx.createBufferSource();
  src.buffer = buf;
  src.connect(ctx.destination);
  src.start();
  return (await ctx.startRendering()).getChannelData(0);
}

let recording = null;

async function startRecording() {
  clearError();
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia || !window.AudioWorkletNode) {
    showError('Recording', 'this browser cannot record here: recording needs a page served over HTTPS or from localhost.');
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
  } catch (e) {
    showError('Recording', `the microphone is not available (${e.name}: ${e.message}).`);
    return;
  }
  const ctx = new AudioContext();
  let source, node;
  try {
    await ctx.audioWorklet.addModule('/web/recorder.js');
    source = ctx.createMediaStreamSource(stream);
    node = new AudioWorkletNode(ctx, 'llm4rec-recorder');
  } catch (e) {
    stream.getTracks().forEach((t) => t.stop());
    ctx.close();
    throw e;
  }
  const rec = { stream, ctx, source, node, chunks: [], samples: 0, rate: ctx.sampleRate, timer: 0 };
  node.port.onmessage = (e) => {
    if (recording !== rec) return;
    rec.chunks.push(e.data);
    rec.samples += e.data.length;
    if (rec.samples >= rec.rate * MAX_RECORD_SECONDS) stopRecording().catch((err) => showError('Recording', err));
  };
  source.connect(node);
  node.connect(ctx.destination); // pulls the processor; its output is silent
  recording = rec;
  const started = performance.now();
  rec.timer = setInterval(() => {
    $('record-status').textContent = `Recording… ${((performance.now() - started) / 1000).toFixed(0)} s of at most ${MAX_RECORD_SECONDS} s`;
  }, 500);
  $('record').textContent = 'Stop recording';
  $('record').dataset.recording = 'true'; // the label says what a press does
  $('record-status').textContent = `Recording… at most ${MAX_RECORD_SECONDS} s`;
}

async function stopRecording() {
  const rec = recording;
  if (!rec) return;
  recording = null;
  clearInterval(rec.timer);
  rec.node.port.onmessage = null;
  rec.stream.getTracks().forEach((t) => t.stop());
  rec.source.disconnect();
  rec.node.disconnect();
  await rec.ctx.close();
  $('record').textContent = 'Record voice';
  delete $('record').dataset.recording;
  const n = Math.min(rec.samples, Math.floor(rec.rate * MAX_RECORD_SECONDS));
  if (n < rec.rate * MIN_RECORD_SECONDS) {
    $('record-status').textContent = '';
    showError('Recording', `the recording is shorter than ${MIN_RECORD_SECONDS} s: record again.`);
    return;
  }
  const all = new Float32Array(n);
  let at = 0;
  for (const c of rec.chunks) {
    if (at >= n) break;
    all.set(c.subarray(0, n - at), at);
    at += Math.min(c.length, n - at);
  }
  const wav = encodeWAV(await resample(all, rec.rate, WAV_RATE), WAV_RATE);
  const blob = new Blob([wav], { type: 'audio/wav' });
  if (state.audio) URL.revokeObjectURL(state.audio.url);
  state.audio = { b64: await fileToBase64(blob), url: URL.createObjectURL(blob), seconds: n / rec.rate };
  $('audio-preview').src = state.audio.url;
  $('audio-preview').hidden = false;
  $('audio-clear').hidden = false;
  $('record-status').textContent = `Recorded ${state.audio.seconds.toFixed(1)} s (16-bit PCM WAV, ${WAV_RATE} Hz, ${(wav.byteLength / 1024).toFixed(0)} KiB): it goes with the next request.`;
}

function clearAudio() {
  if (state.audio) URL.revokeObjectURL(state.audio.url);
  state.audio = null;
  $('audio-preview').removeAttribute('src');
  $('audio-preview').hidden = true;
  $('audio-clear').hidden = true;
  $('record-status').textContent = '';
  $('record').focus();
}

// ---- recommendations ----

async function recommend(reason) {
  if (isBusy($('recommend'))) return;
  clearError();
  const k = Number($('k').value);
  if (!Number.isInteger(k) || k < 1 || k > 100) {
    showError('Recommend', 'the number of items must be a whole number from 1 to 100.');
    $('k').focus();
    return;
  }
  const body = { user_id: userID(), k, explain: $('detailed').checked ? 'detailed' : true };
  const sent = [];
  if (state.picks.length) body.history = state.picks.slice();
  const histLen = state.live.length + state.picks.length;
  if (histLen) sent.push(`history of ${histLen} items`);
  const q = $('query').value.trim();
  if (q) { body.query = q; sent.push('text'); }
  if (state.image) { body.image = state.image.b64; sent.push('image'); }
  if (state.audio) { body.audio = state.audio.b64; sent.push(`voice (${state.audio.seconds.toFixed(1)} s)`); }
  if (!sent.length) {
    showError('Recommend', 'add items to the history, describe what you would like, or add an image or a recording first.');
    return;
  }
  const t0 = performance.now();
  say(reason || 'Asking the model…');
  let r;
  try {
    r = await busy($('recommend'), () => api('POST', '/v1/recommend', body));
  } catch (e) {
    say('');
    showError('Recommend', e);
    return;
  }
  state.last = r;
  remember(r.items);
  renderResults(r);
  const shown = performance.now();
  performance.measure('llm4rec:list', { start: t0, end: shown });
  renderMeta(r, sent, shown - t0);
  say(`${r.items.length} items for ${sent.join(', ')}; shown ${Math.round(shown - t0)} ms after the click.`);
  // titles of the retrieved context come after the list
  resolve(r.context_items || []).then(() => renderContext(r));
}

function evidenceNode(ev) {
  const inputs = { query: ['#query', 'your text'], image: ['#image', 'your image'], audio: ['#record', 'your recording'] };
  if (inputs[ev]) return el('a', { href: inputs[ev][0], text: inputs[ev][1] });
  for (const prefix of ['hist-', 'ctx-', 'rec-']) {
    if (document.getElementById(prefix + ev)) return el('a', { href: '#' + prefix + ev, text: titleOf(ev) });
  }
  return el('span', { 'data-ev': ev, text: catalog.has(ev) ? titleOf(ev) : ev });
}

function renderResults(r) {
  const list = $('results');
  list.replaceChildren();
  r.items.forEach((it, i) => {
    const why = el('ul', { class: 'why', 'aria-label': `Why ${it.title}` });
    for (const x of it.explanations || []) {
      const li = el('li', {}, el('span', { text: x.text }));
      const ev = (x.evidence || []).filter((e) => e !== it.item_id);
      if (ev.length) {
        const span = el('span', { class: 'evidence' }, ' (evidence: ');
        ev.forEach((e, j) => { if (j) span.append(', '); span.append(evidenceNode(e)); });
        span.append(')');
        li.append(span);
      }
      why.append(li);
    }
    const act = (type, label) => el('button', { type: 'button', 'data-type': type, 'aria-label': `${label}: ${it.title}`, text: label,
      onclick: (e) => feedback(it, type, e.currentTarget) });
    list.append(el('li', { id: 'rec-' + it.item_id, tabindex: '-1' },
      el('h3', {}, el('span', { class: 'rank', text: `${i + 1}.` }), it.title),
      el('p', { class: 'cats', text: (it.categories || []).join(', ') }),
      el('p', { class: 'score', text: `score ${it.score.toFixed(3)} · log-probability ${it.log_prob.toFixed(3)}` }),
      why,
      el('div', { class: 'actions' }, act('click', 'Click'), act('like', 'Like'))));
  });
  // links to list items need the whole list in place
  for (const s of list.querySelectorAll('.evidence span[data-ev]')) {
    const id = s.dataset.ev;
    if (document.getElementById('rec-' + id)) s.replaceWith(el('a', { href: '#rec-' + id, text: titleOf(id) }));
  }
}

function renderMeta(r, sent, ms) {
  const m = r.model || {};
  $('model-info').textContent = `Model: ${m.name} version ${m.version} on ${r.provider}`;
  const t = r.timings_us || {};
  const stage = (us) => `${((us || 0) / 1000).toFixed(1)} ms`;
  const rows = [
    ['Model', `${m.name} version ${m.version}`],
    ['Execution provider', r.provider],
    ['Mode', r.mode],
    ['IPS strength', String(r.ips_alpha)],
    ['Sent', sent.join(', ')],
    ['Encode', stage(t.encode)], ['Retrieve', stage(t.retrieve)], ['Fusion', stage(t.fusion)],
    ['Generate', stage(t.generate)], ['Rank', stage(t.rank)], ['Explain', stage(t.explain)],
    ['Shown after', `${Math.round(ms)} ms`],
  ];
  if (r.history_skipped && r.history_skipped.length) rows.push(['Left out of the history', r.history_skipped.join(', ')]);
  $('meta').replaceChildren(...rows.flatMap(([k, v]) => [el('dt', { text: k }), el('dd', { text: v })]));
  renderContext(r);
}

function renderContext(r) {
  if (state.last !== r) return;
  $('context').replaceChildren(...(r.context_items || []).map((id) => el('li', { id: 'ctx-' + id, tabindex: '-1' },
    el('span', {}, el('span', { class: 'title', text: titleOf(id) }), ' ', el('span', { class: 'cats', text: categoriesOf(id) })))));
}

async function feedback(item, type, button) {
  if (isBusy(button)) return;
  clearError();
  const user = userID();
  const done = type === 'like' ? 'Liked' : 'Clicked';
  try {
    await busy(button, () => api('POST', '/v1/feedback',
      { event_id: newID(), user_id: user, item_id: item.item_id, type, timestamp: new Date().toISOString() }));
    await loadUser(true);
  } catch (e) {
    showError('Feedback', e);
    return;
  }
  renderSearchState();
  await recommend(`${done} ${item.title}: it is in ${user}'s history now; updating the list…`);
  $('results-heading').focus();
}

// ---- wiring ----

function init() {
  const key = $('api-key');
  key.value = sessionStorage.getItem('llm4rec.key') || '';
  key.addEventListener('input', () => sessionStorage.setItem('llm4rec.key', key.value));
  const user = $('user-id');
  user.value = sessionStorage.getItem('llm4rec.user') || '';
  userID();
  user.addEventListener('change', () => {
    sessionStorage.setItem('llm4rec.user', user.value.trim());
    state.live = [];
    renderHistory();
    if (user.value.trim()) loadUser(false).then(renderSearchState, (e) => showError('History', e));
  });
  $('user-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (isBusy($('load-user'))) return;
    clearError();
    await busy($('load-user'), () => loadUser(false).catch((e) => showError('History', e)));
    renderSearchState();
  });
  $('search-form').addEventListener('submit', search);
  $('clear-picks').addEventListener('click', () => { state.picks = []; renderHistory(); renderSearchState(); });
  $('rec-form').addEventListener('submit', (ev) => { ev.preventDefault(); recommend(); });

  $('image').addEventListener('change', () => takeImage($('image').files[0]));
  $('image-clear').addEventListener('click', clearImage);
  const drop = $('drop');
  drop.addEventListener('dragover', (ev) => { ev.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (ev) => {
    ev.preventDefault();
    drop.classList.remove('over');
    takeImage(ev.dataTransfer.files[0]);
  });

  $('record').addEventListener('click', () => (recording ? stopRecording() : startRecording()).catch((e) => showError('Recording', e)));
  $('audio-clear').addEventListener('click', clearAudio);
  renderHistory();
}

// The WAV encoder and the current recording, for diagnostics (the browser test reads them).
globalThis.llm4rec = Object.freeze({ encodeWAV, recording: () => (state.audio ? state.audio.b64 : '') });

init();
