// tilefarm's page: upload data, follow its job, look at the layer on a Leaflet
// map, click a feature to see it, and edit the layer. It never shows a broken
// tile: a tile that fails is blank and tried again later, and while the server
// is not answering the page says so and keeps what it shows.
import L from 'leaflet';

const $ = (id) => document.getElementById(id);
const config = Object.assign(
  { max_upload_bytes: 256 << 20, max_zoom: 18, token_required: false },
  JSON.parse($('tilefarm-config').textContent || '{}'),
);
// A transparent 1x1 image: what a tile that failed shows.
const BLANK = 'data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7';

const STYLES = {
  'Reference (blue)': {},
  'By continent': {
    polygon: {
      fill: {
        property: 'continent',
        match: {
          Africa: '#e0a030', Europe: '#3070c0', Asia: '#c04040', 'North America': '#40a060',
          'South America': '#80b040', Oceania: '#9060c0', Antarctica: '#c8d0d8',
        },
        default: '#999999',
      },
      outline: '#ffffff', outline_width: 0.5,
    },
  },
  'Outline only': { polygon: { fill: null, outline: '#203860', outline_width: 1.5 } },
  'Warm': {
    polygon: { fill: '#f2b880', outline: '#a0522d', outline_width: 1 },
    line: { color: '#a0522d', width: 1.5 },
    point: { color: '#b03030', radius: 3 },
  },
  'Dark lines and points': {
    line: { color: '#222222', width: { stops: [[0, 0.5], [6, 1.5], [10, 3]] } },
    point: { color: '#222222', radius: 3 },
  },
};

// ---------------------------------------------------------------- helpers

function mb(bytes) {
  if (bytes >= 1 << 20) return `${(bytes / (1 << 20)).toFixed(bytes >= 10 << 20 ? 0 : 1)} MB`;
  if (bytes >= 1024) return `${Math.round(bytes / 1024)} kB`;
  return `${bytes} bytes`;
}

function duration(s) {
  if (s < 1) return 'under a second';
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

const token = {
  get() { return $('token').value.trim(); },
  headers(extra = {}) {
    const t = token.get();
    return t ? { ...extra, authorization: `Bearer ${t}` } : extra;
  },
};

// What a failed answer means to a person.
function explain(status, body, what) {
  const code = body && body.error && body.error.code;
  const message = (body && body.error && body.error.message) || '';
  if (status === 401) {
    return token.get()
      ? 'Wrong token: the server refused the token given. Check it and try again.'
      : 'This server needs a token for that: enter it in the Token field.';
  }
  if (status === 413) return `Too large: ${message || `the limit is ${mb(config.max_upload_bytes)}`}`;
  if (status === 0) return `The server is not answering, so ${what} was not sent. Try again when it is back.`;
  if (status >= 500) return `The server could not do it just now (${message || status}). Try again shortly.`;
  return message ? `${message}${code ? ` (${code})` : ''}` : `${what} failed (HTTP ${status})`;
}

async function api(path, options = {}) {
  let res;
  try {
    res = await fetch(path, { cache: 'no-store', ...options });
  } catch (e) {
    health.suspect();
    return { status: 0, body: null };
  }
  let body = null;
  try { body = await res.json(); } catch (e) { /* not JSON */ }
  if (res.status >= 502) health.suspect();
  return { status: res.status, body };
}

// ---------------------------------------------------------------- notices

// Several parts of the page may have something to say at once; the notice
// shows them all.
const notices = new Map();
function notice(key, text) {
  if (text) notices.set(key, text); else notices.delete(key);
  const box = $('notice');
  box.textContent = [...notices.values()].join(' ');
  box.hidden = notices.size === 0;
}

// ---------------------------------------------------------------- health

// Watches the server: every 10 s while it answers, every 1-5 s while it does
// not. When it comes back, every part of the page that was waiting retries.
const health = {
  up: true,
  timer: null,
  delay: 1000,
  listeners: [],
  onBack(f) { this.listeners.push(f); },
  schedule(ms) { clearTimeout(this.timer); this.timer = setTimeout(() => this.check(), ms); },
  suspect() { if (this.up) this.schedule(0); },
  async check() {
    let ok = false;
    try {
      const ctl = new AbortController();
      const t = setTimeout(() => ctl.abort(), 3000);
      const res = await fetch('/healthz', { cache: 'no-store', signal: ctl.signal });
      clearTimeout(t);
      ok = res.ok;
    } catch (e) { ok = false; }
    if (ok) {
      const wasDown = !this.up;
      this.up = true;
      this.delay = 1000;
      notice('health', null);
      if (wasDown) this.listeners.forEach((f) => f());
      this.schedule(10000);
    } else {
      this.up = false;
      notice('health', 'The tile server is not answering; retrying…');
      this.schedule(this.delay);
      this.delay = Math.min(this.delay * 2, 5000);
    }
  },
};

// ---------------------------------------------------------------- map

const map = L.map('map', { zoomControl: false, worldCopyJump: true, minZoom: 0 }).setView([20, 0], 2);
L.control.zoom({ position: 'topright' }).addTo(map);
L.control.scale({ position: 'bottomright' }).addTo(map);
map.attributionControl.setPrefix('<a href="https://leafletjs.com">Leaflet</a>');

// Tiles that failed, each tried again with backoff until it loads or leaves
// the map; all of them at once when the server is back.
const failed = new Set();

function retryTile(img, now) {
  if (!img.isConnected) { failed.delete(img); return; }
  clearTimeout(img._retry);
  const attempt = (img._attempt = (img._attempt || 0) + 1);
  const wait = now ? 0 : Math.min(1000 * 2 ** (attempt - 1), 30000);
  img._retry = setTimeout(() => {
    if (!img.isConnected) { failed.delete(img); return; }
    // Tried out of sight, so the tile on the map is never a broken image.
    const probe = new Image();
    probe.onload = () => {
      failed.delete(img);
      img._attempt = 0;
      delete img.dataset.failed;
      img.src = img.dataset.url;
    };
    probe.onerror = () => { health.suspect(); retryTile(img); };
    probe.src = img.dataset.url;
  }, wait);
}

const Tiles = L.TileLayer.extend({
  createTile(coords, done) {
    const img = document.createElement('img');
    img.alt = '';
    img.setAttribute('role', 'presentation');
    img.dataset.url = this.getTileUrl(coords);
    let reported = false;
    img.onload = () => {
      // A failed tile is not done: Leaflet keeps showing the tiles of other
      // zooms under it until it loads.
      if (!reported && !img.dataset.failed) { reported = true; done(null, img); }
    };
    img.onerror = () => {
      // Nothing rather than a broken tile; the tile is tried again later.
      img.dataset.failed = '1';
      img.src = BLANK;
      failed.add(img);
      health.suspect();
      retryTile(img);
    };
    img.src = img.dataset.url;
    return img;
  },
});

health.onBack(() => { for (const img of [...failed]) retryTile(img, true); });

// ---------------------------------------------------------------- state

const state = { layer: null, layerInfo: null, tiles: null, version: null, job: null };

function setHash() {
  const parts = [];
  if (state.layer) parts.push(`layer=${state.layer}`);
  if (state.job) parts.push(`job=${state.job}`);
  const hash = parts.length ? `#${parts.join('&')}` : ' ';
  if (location.hash !== hash) history.replaceState(null, '', hash === ' ' ? location.pathname : hash);
}

function readHash() {
  const p = new URLSearchParams(location.hash.slice(1));
  return { layer: p.get('layer'), job: p.get('job') };
}

// Layers this browser has seen, newest first, with their names.
const known = {
  load() { try { return JSON.parse(localStorage.getItem('tilefarm.layers') || '[]'); } catch (e) { return []; } },
  remember(id, name) {
    const list = this.load().filter((l) => l.id !== id);
    list.unshift({ id, name, seen: Date.now() });
    localStorage.setItem('tilefarm.layers', JSON.stringify(list.slice(0, 50)));
  },
  name(id) { const l = this.load().find((x) => x.id === id); return l && l.name; },
};

// ---------------------------------------------------------------- the layer

// Shows `version` of the current layer. A new version is laid over the old
// one, which goes once the new tiles have loaded, so the map never goes blank.
function showTiles(version) {
  const info = state.layerInfo;
  if (state.tiles && state.version === version) return;
  const url = `/tiles/${info.id}/{z}/{x}/{y}.png?v=${version}`;
  const layer = new Tiles(url, {
    minNativeZoom: info.min_zoom,
    maxNativeZoom: info.max_zoom,
    minZoom: 0,
    maxZoom: Math.min(info.max_zoom + 4, 22),
    tileSize: 256,
    keepBuffer: 4,
    attribution: 'tiles: tilefarm',
    layerId: info.id,
  });
  const old = state.tiles;
  state.tiles = layer;
  state.version = version;
  layer.addTo(map);
  if (old) {
    const drop = () => { if (map.hasLayer(old)) map.removeLayer(old); };
    layer.once('load', drop);
    setTimeout(drop, 15000);
  }
  window.tilefarm.version = version;
}

function fit(bounds) {
  if (!bounds) return;
  let [w, s, e, n] = bounds;
  // Data across the antimeridian: its east edge is past 180.
  if (e < w) e += 360;
  // The data goes where the panel does not cover it: beside it on a wide
  // screen, above it on a phone.
  const panel = $('panel').getBoundingClientRect();
  const narrow = panel.width > innerWidth * 0.8;
  map.fitBounds([[s, w], [n, e]], {
    paddingTopLeft: [narrow ? 10 : panel.right + 10, 10],
    paddingBottomRight: [10, narrow ? innerHeight - panel.top + 10 : 10],
    maxZoom: state.layerInfo.max_zoom,
  });
}

async function openLayer(id, { fitMap = true } = {}) {
  const { status, body } = await api(`/v1/layers/${id}`);
  if (status !== 200) {
    if (status === 0) return false;
    $('layer-box').hidden = false;
    $('layer-name').textContent = 'Layer not found';
    $('layer-info').textContent = explain(status, body, 'opening the layer');
    return false;
  }
  const other = state.tiles && state.tiles.options.layerId !== id;
  if (other) { map.removeLayer(state.tiles); state.tiles = null; state.version = null; }
  const first = !state.tiles;
  state.layer = id;
  state.layerInfo = body;
  known.remember(id, body.name);
  setHash();
  $('layer-box').hidden = false;
  $('layer-name').textContent = body.name;
  const ready = body.published_version != null;
  $('layer-info').textContent = ready
    ? `${body.feature_count} features, zooms ${body.min_zoom}-${body.max_zoom}, version ${body.published_version}`
    : `zooms ${body.min_zoom}-${body.max_zoom}; not rendered yet`;
  if (ready) {
    showTiles(body.published_version);
    if (first && fitMap) {
      // TileJSON has the bounds right across the antimeridian; the layer's
      // own bounds otherwise.
      const tj = await api(`/v1/layers/${id}/tilejson`);
      fit((tj.status === 200 && tj.body.bounds) || body.bounds);
    }
  }
  renderLists();
  return true;
}

// ---------------------------------------------------------------- the job

// Follows a job: its status first, then its server-sent events; when the
// stream breaks it says so and reconnects with backoff.
const follower = {
  id: null, source: null, timer: null, delay: 1000, last: null, rate: null, finished: false,

  start(id) {
    this.stop();
    Object.assign(this, { id, delay: 1000, last: null, rate: null, since: null, finished: false, summarized: false });
    state.job = id;
    setHash();
    $('job-box').hidden = false;
    $('job-error').textContent = '';
    $('job-rate').textContent = '';
    $('job-summary').textContent = '';
    $('job-state').textContent = '';
    $('job-state').className = 'state';
    $('job-text').textContent = 'asking for the job\'s status…';
    $('job-bar').value = 0;
    $('cancel').hidden = true;
    this.connect();
  },

  stop() {
    if (this.source) this.source.close();
    clearTimeout(this.timer);
    this.source = null;
    this.id = null;
  },

  async connect() {
    const id = this.id;
    if (!id) return;
    const { status, body } = await api(`/v1/jobs/${id}`);
    if (id !== this.id) return;
    if (status === 404 || status === 400) {
      notice('job', null);
      $('job-state').textContent = '';
      $('job-text').textContent = '';
      $('job-error').textContent = explain(status, body, 'following the job');
      state.job = null;
      setHash();
      return;
    }
    if (status !== 200) return this.lost();
    this.update(body);
    if (this.finished) return;
    const source = new EventSource(`/v1/jobs/${id}/events`);
    this.source = source;
    source.addEventListener('open', () => { notice('job', null); this.delay = 1000; });
    source.addEventListener('status', (e) => this.update(JSON.parse(e.data)));
    source.addEventListener('error', () => {
      source.close();
      if (this.source !== source) return;
      this.source = null;
      if (!this.finished) this.lost();
    });
  },

  lost() {
    notice('job', 'Connection to the job lost; reconnecting…');
    health.suspect();
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), this.delay);
    this.delay = Math.min(this.delay * 2, 5000);
  },

  // Tiles per second, smoothed over about five seconds, so the estimate does
  // not jump about with each update.
  measure(job) {
    const now = performance.now() / 1000;
    const done = job.progress.done;
    if (job.state !== 'running' || job.stage !== 'render' && job.stage !== 'invalidate') {
      this.last = { t: now, done };
      return;
    }
    if (this.last && now > this.last.t) {
      const dt = now - this.last.t;
      const instant = (done - this.last.done) / dt;
      const a = 1 - Math.exp(-dt / 5);
      this.rate = this.rate == null ? instant : this.rate + a * (instant - this.rate);
      this.since = this.since || now;
    }
    this.last = { t: now, done };
  },

  // The upload's summary (format, features, bounds) is in the job's status
  // once it has been read, not in its events.
  async summary(job) {
    if (this.summarized || ['queued', 'ingest'].includes(job.stage) || job.kind === 'edit') return;
    this.summarized = true;
    const { status, body } = await api(`/v1/jobs/${job.id}`);
    if (status === 200 && body.ingest && body.id === this.id) this.showSummary(body.ingest);
    else if (status !== 200) this.summarized = false;
  },

  showSummary(g) {
    const types = Object.entries(g.geometry_types || {}).map(([k, v]) => `${v} ${k}`).join(', ');
    const b = g.bounds ? ` within ${g.bounds.map((x) => x.toFixed(2)).join(', ')}` : '';
    const skipped = g.skipped && g.skipped.count ? `; ${g.skipped.count} skipped` : '';
    $('job-summary').textContent = `${g.format}, ${g.crs}: ${g.features} features (${types})${b}${skipped}`;
  },

  update(job) {
    if (job.id !== this.id) return;
    const p = job.progress;
    this.measure(job);
    const wasFinished = this.finished;
    this.finished = !['queued', 'running'].includes(job.state);
    $('job-kind').textContent = job.kind === 'edit' ? '(edit)' : job.kind === 'replace' ? '(new data)' : '';
    const st = $('job-state');
    st.textContent = job.state;
    st.className = `state ${job.state}`;
    const pct = p.total ? Math.floor((100 * p.done) / p.total) : job.state === 'succeeded' ? 100 : 0;
    const bar = $('job-bar');
    bar.value = pct;
    bar.dataset.percent = pct;
    const stage = {
      waiting: 'waiting for the layer\'s previous job',
      ingest: 'reading the data',
      plan: 'planning tiles',
      render: 'rendering tiles',
      invalidate: 'telling the CDN',
    }[job.stage] || job.stage;
    $('job-text').textContent = p.total != null
      ? `${stage}: ${p.done.toLocaleString('en')} / ${p.total.toLocaleString('en')} tiles (${pct} %)`
      : `${stage}…`;
    if (job.state === 'running' && p.total) {
      const left = p.total - p.done;
      const settled = this.rate != null && performance.now() / 1000 - this.since >= 2;
      $('job-rate').textContent = settled && this.rate > 0
        ? `${Math.round(this.rate).toLocaleString('en')} tiles/s, about ${duration(left / this.rate)} left`
        : 'estimating the time left…';
    } else if (job.state === 'succeeded' && job.started_at && job.finished_at) {
      const s = (Date.parse(job.finished_at) - Date.parse(job.started_at)) / 1000;
      $('job-rate').textContent = `done in ${duration(s)}`;
    } else {
      $('job-rate').textContent = '';
    }
    if (job.ingest) { this.summarized = true; this.showSummary(job.ingest); } else this.summary(job);
    $('job-error').textContent = job.error
      ? `${job.state === 'cancelled' ? 'Cancelled' : 'Failed'}: ${job.error.message} (${job.error.code})`
      : job.state === 'cancelled' ? 'Cancelled.' : '';
    $('cancel').hidden = this.finished;
    if (state.layer !== job.layer_id && !state.layerInfo) openLayer(job.layer_id);
    if (this.finished && !wasFinished) {
      notice('job', null);
      if (this.source) { this.source.close(); this.source = null; }
      renderLists();
      if (job.state === 'succeeded') {
        // An upload opens its layer; a change shows its new version in place.
        openLayer(job.layer_id, { fitMap: job.kind === 'upload' });
      }
    }
  },
};

$('cancel').addEventListener('click', async () => {
  const id = follower.id;
  if (!id) return;
  const { status, body } = await api(`/v1/jobs/${id}`, { method: 'DELETE', headers: token.headers() });
  if (status === 200) follower.update(body);
  else $('job-error').textContent = explain(status, body, 'the cancel');
});

health.onBack(() => {
  if (follower.id && !follower.finished && !follower.source) { follower.delay = 1000; follower.connect(); }
  if (state.layer) openLayer(state.layer, { fitMap: false });
});

// ---------------------------------------------------------------- upload

$('limit').textContent = mb(config.max_upload_bytes);
$('maxzoom').max = $('minzoom').max = config.max_zoom;
for (const name of Object.keys(STYLES)) {
  const o = document.createElement('option');
  o.textContent = name;
  $('style').appendChild(o);
}
$('token').value = sessionStorage.getItem('tilefarm.token') || '';
$('token').addEventListener('input', () => sessionStorage.setItem('tilefarm.token', token.get()));
if (config.token_required) $('token').placeholder = 'this server needs one for uploads';

function chosen(file) {
  $('upload-error').textContent = '';
  if (!file) { $('file-label').textContent = 'Choose a file or drop it here'; return; }
  $('file-label').textContent = `${file.name} (${mb(file.size)})`;
  if (!$('name').value) $('name').placeholder = file.name.replace(/\.[^.]*$/, '');
  if (file.size > config.max_upload_bytes) {
    $('upload-error').textContent = `${file.name} is ${mb(file.size)}, more than this server takes (${mb(config.max_upload_bytes)}).`;
  }
}
$('file').addEventListener('change', () => chosen($('file').files[0]));

// Drag and drop anywhere on the page.
let dragDepth = 0;
document.addEventListener('dragenter', (e) => { e.preventDefault(); dragDepth++; $('drop').hidden = false; });
document.addEventListener('dragleave', () => { if (--dragDepth <= 0) { dragDepth = 0; $('drop').hidden = true; } });
document.addEventListener('dragover', (e) => e.preventDefault());
document.addEventListener('drop', (e) => {
  e.preventDefault();
  dragDepth = 0;
  $('drop').hidden = true;
  if (e.dataTransfer && e.dataTransfer.files.length) {
    $('file').files = e.dataTransfer.files;
    chosen($('file').files[0]);
    $('panel').classList.remove('folded');
  }
});

// Sends `body` with byte progress; resolves to {status, body}. Status 0 when
// the server could not be reached or the connection broke.
function send(method, url, body, onProgress) {
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, url);
    for (const [k, v] of Object.entries(token.headers({ 'content-type': 'application/octet-stream' }))) {
      xhr.setRequestHeader(k, v);
    }
    xhr.upload.addEventListener('progress', (e) => onProgress(e.loaded, e.lengthComputable ? e.total : body.size));
    xhr.addEventListener('load', () => {
      let answer = null;
      try { answer = JSON.parse(xhr.responseText); } catch (e) { /* not JSON */ }
      resolve({ status: xhr.status, body: answer });
    });
    xhr.addEventListener('error', () => { health.suspect(); resolve({ status: 0, body: null }); });
    xhr.addEventListener('abort', () => resolve({ status: 0, body: null }));
    xhr.send(body);
  });
}

$('upload').addEventListener('submit', async (e) => {
  e.preventDefault();
  const file = $('file').files[0];
  const error = $('upload-error');
  error.textContent = '';
  if (!file) { error.textContent = 'Choose a file to upload first.'; return; }
  if (file.size > config.max_upload_bytes) {
    error.textContent = `${file.name} is ${mb(file.size)}, more than this server takes (${mb(config.max_upload_bytes)}).`;
    return;
  }
  const min = Number($('minzoom').value), max = Number($('maxzoom').value);
  if (!(min >= 0 && max >= min && max <= config.max_zoom)) {
    error.textContent = `Zooms: give a range within 0-${config.max_zoom}, the first no deeper than the second.`;
    return;
  }
  const q = new URLSearchParams({
    name: $('name').value.trim() || file.name.replace(/\.[^.]*$/, ''),
    zooms: `${min}-${max}`,
  });
  const style = STYLES[$('style').value];
  if (style && Object.keys(style).length) q.set('style', JSON.stringify(style));
  $('send').disabled = true;
  $('send-box').hidden = false;
  const progress = (loaded, total) => {
    const pct = total ? Math.floor((100 * loaded) / total) : 0;
    $('send-bar').value = pct;
    $('send-text').textContent = `Sending ${mb(loaded)} of ${mb(total)} (${pct} %)`;
    window.tilefarm.sent = loaded;
  };
  progress(0, file.size);
  const { status, body } = await send('POST', `/v1/layers?${q}`, file, progress);
  $('send').disabled = false;
  $('send-box').hidden = true;
  if (status !== 202) { error.textContent = explain(status, body, 'the upload'); return; }
  // The map keeps showing what it shows until the new layer is ready.
  known.remember(body.layer_id, q.get('name'));
  follower.start(body.job.id);
  renderLists();
});

// ---------------------------------------------------------------- edits

async function sendEdit(edit) {
  const { status, body } = await api(`/v1/layers/${state.layer}/edits`, {
    method: 'POST',
    headers: token.headers({ 'content-type': 'application/json' }),
    body: JSON.stringify(edit),
  });
  if (status !== 202) return explain(status, body, 'the edit');
  follower.start(body.job.id);
  return null;
}

$('upsert').addEventListener('click', async () => {
  const file = $('upsert-file').files[0];
  if (!file || !state.layer) return;
  let fc;
  try {
    const text = await file.text();
    try { fc = JSON.parse(text); } catch (e) { throw new Error(`${file.name} is not JSON: ${e.message}`); }
  } catch (e) {
    $('job-box').hidden = false;
    $('job-error').textContent = e.message.startsWith(file.name) ? e.message : `${file.name} could not be read: ${e.message}`;
    return;
  }
  const err = await sendEdit({ upsert: fc });
  if (err) { $('job-box').hidden = false; $('job-error').textContent = err; }
});

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

function featureHtml(f) {
  const rows = Object.entries(f.properties || {})
    .map(([k, v]) => `<tr><th>${escapeHtml(k)}</th><td>${escapeHtml(typeof v === 'object' ? JSON.stringify(v) : v)}</td></tr>`)
    .join('');
  const title = f.id != null ? `Feature ${escapeHtml(JSON.stringify(f.id))}` : 'Feature without an id';
  const action = f.id != null
    ? `<button type="button" class="delete-feature" data-id='${escapeHtml(JSON.stringify(f.id))}'>Delete this feature</button>`
    : '<p class="hint">Without an id it cannot be edited; give the features ids in the data.</p>';
  return `<div class="feature-popup"><h4>${title} <span class="hint">${escapeHtml(f.geometry_type || '')}</span></h4>
    <table class="props">${rows}</table>${action}</div>`;
}

map.on('click', async (e) => {
  if (!state.layer || !state.layerInfo || state.layerInfo.published_version == null) return;
  const ll = e.latlng.wrap();
  const q = new URLSearchParams({
    lon: ll.lng.toFixed(6), lat: ll.lat.toFixed(6),
    zoom: String(Math.round(map.getZoom())), radius_px: '4',
  });
  const { status, body } = await api(`/v1/layers/${state.layer}/features?${q}`);
  let html;
  if (status !== 200) html = `<p class="error">${escapeHtml(explain(status, body, 'the look-up'))}</p>`;
  else if (!body.features.length) return;
  else html = body.features.slice(0, 5).map(featureHtml).join('<hr>')
    + (body.features.length > 5 ? `<p class="hint">and ${body.features.length - 5} more here</p>` : '');
  L.popup({ maxWidth: 300, maxHeight: 320 }).setLatLng(e.latlng).setContent(html).openOn(map);
});

map.on('popupopen', (e) => {
  for (const b of e.popup.getElement().querySelectorAll('.delete-feature')) {
    b.addEventListener('click', async () => {
      b.disabled = true;
      b.textContent = 'Deleting…';
      const err = await sendEdit({ delete: [JSON.parse(b.dataset.id)] });
      if (err) { b.disabled = false; b.textContent = 'Delete this feature'; b.insertAdjacentHTML('afterend', `<p class="error">${escapeHtml(err)}</p>`); } else map.closePopup();
    });
  }
});

// ---------------------------------------------------------------- lists

async function renderLists() {
  const layers = $('layers');
  const seen = known.load();
  layers.replaceChildren(...seen.slice(0, 15).map((l) => {
    const li = document.createElement('li');
    const a = document.createElement('a');
    a.href = `#layer=${l.id}`;
    a.textContent = l.name || l.id;
    if (l.id === state.layer) a.style.fontWeight = 'bold';
    li.appendChild(a);
    return li;
  }));
  if (!seen.length) layers.innerHTML = '<li class="hint">none yet</li>';
  const { status, body } = await api('/v1/jobs?limit=15', { headers: token.headers() });
  const jobs = $('jobs');
  if (status !== 200) {
    jobs.replaceChildren();
    $('jobs-note').textContent = status === 401
      ? (token.get() ? 'Wrong token: the job list was refused.' : 'The job list needs the token.')
      : status === 0 ? '' : explain(status, body, 'the job list');
    return;
  }
  $('jobs-note').textContent = body.jobs.length ? '' : 'no jobs yet';
  jobs.replaceChildren(...body.jobs.map((j) => {
    const li = document.createElement('li');
    const a = document.createElement('a');
    a.href = `#layer=${j.layer_id}&job=${j.id}`;
    const name = known.name(j.layer_id) || j.layer_id.slice(0, 8);
    const p = j.progress.total ? ` ${j.progress.done}/${j.progress.total}` : '';
    a.textContent = `${name}: ${j.kind}`;
    const s = document.createElement('span');
    s.className = `state ${j.state}`;
    s.textContent = j.state + p;
    li.append(a, ' ', s);
    return li;
  }));
}
$('token').addEventListener('change', renderLists);

// ---------------------------------------------------------------- start

$('toggle').addEventListener('click', () => {
  const folded = $('panel').classList.toggle('folded');
  $('toggle').setAttribute('aria-expanded', String(!folded));
});

function fromHash() {
  const { layer, job } = readHash();
  if (layer && layer !== state.layer) openLayer(layer);
  if (job && job !== follower.id) follower.start(job);
}
window.addEventListener('hashchange', fromHash);

// For the browser test and the curious.
window.tilefarm = { map, state, follower, health, failed, version: null };

fromHash();
renderLists();
health.schedule(10000);
