// The page in Debian's Chromium, driven by playwright-core: tokens, upload,
// progress, tiles on the map, a dropped bad file, the server stopped and
// started again, a deletion and upserts from the page, a reload, a
// phone-sized screen, and a cancel. Run by cli/tests/browser.rs, which
// starts `tilefarm serve` and stops and starts it when this script asks
// ("@@server stop" / "@@server start" on stdout, "ok" back on stdin).
//
// Settings (environment): TILEFARM_URL, TILEFARM_TOKEN, TILEFARM_SAMPLE (the
// countries), TILEFARM_WORLD (countries with ids, a longer job), TILEFARM_BAD
// (a file whose job fails), TILEFARM_SHOTS (where screenshots go),
// TILEFARM_MAX_UPLOAD (the server's limit, as the page should show it).
import { chromium } from 'playwright-core';
import readline from 'node:readline';
import { mkdirSync } from 'node:fs';
import path from 'node:path';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const base = env('TILEFARM_URL');
const shots = env('TILEFARM_SHOTS');
mkdirSync(shots, { recursive: true });
const CHROMIUM = '/usr/bin/chromium';

// The whole run may not hang.
setTimeout(() => { console.error('FAIL: the browser test took more than 12 minutes'); process.exit(2); }, 12 * 60 * 1000).unref();

const replies = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function server(what) {
  process.stdout.write(`@@server ${what}\n`);
  const { value } = await replies.next();
  if (value !== 'ok') throw new Error(`the server could not ${what}: ${value}`);
}

let step = 'start';
function check(ok, message) {
  if (!ok) throw new Error(`${step}: ${message}`);
}
function log(message) { console.log(`[browser] ${step}: ${message}`); }

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  chromiumSandbox: false,
  args: ['--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
let failedRun = false;
try {
  await run();
} catch (e) {
  failedRun = true;
  console.error(`FAIL (${step}): ${e.stack || e}`);
} finally {
  await browser.close();
}
process.exit(failedRun ? 1 : 0);

// Pixels of a screenshot of `clip`: how many look like data (the reference
// style's blue, or any colour clearly off the grey background), and the mean colour.
async function pixels(page, clip) {
  const png = await page.screenshot({ clip });
  return page.evaluate(async (b64) => {
    const img = new Image();
    img.src = `data:image/png;base64,${b64}`;
    await img.decode();
    const c = document.createElement('canvas');
    c.width = img.width;
    c.height = img.height;
    const g = c.getContext('2d');
    g.drawImage(img, 0, 0);
    const d = g.getImageData(0, 0, c.width, c.height).data;
    let data = 0;
    const sum = [0, 0, 0];
    for (let i = 0; i < d.length; i += 4) {
      if (d[i + 2] - d[i] > 40) data++;
      sum[0] += d[i]; sum[1] += d[i + 1]; sum[2] += d[i + 2];
    }
    const n = d.length / 4;
    return { data, total: n, share: data / n, mean: sum.map((s) => Math.round(s / n)) };
  }, png.toString('base64'));
}

// The map's tiles, once none is still loading.
async function tilesSettled(page) {
  await page.waitForFunction(() => {
    const imgs = [...document.querySelectorAll('.leaflet-tile-container img')];
    return imgs.length > 0 && imgs.every((i) => i.complete) && !document.querySelector('.leaflet-tile-container img[data-failed]');
  }, null, { timeout: 60000 });
  // Leaflet fades tiles in.
  await page.waitForTimeout(400);
}

// Images that show as broken: loaded (or given up), no picture, and visible.
function brokenImages(page) {
  return page.evaluate(() => [...document.querySelectorAll('img')].filter((i) => {
    if (!i.complete || i.naturalWidth > 0) return false;
    const s = getComputedStyle(i);
    const r = i.getBoundingClientRect();
    return s.visibility !== 'hidden' && s.display !== 'none' && r.width > 0 && r.height > 0
      && r.right > 0 && r.bottom > 0 && r.left < innerWidth && r.top < innerHeight;
  }).map((i) => i.src));
}

// Where a longitude/latitude is on the page.
function pointOf(page, lon, lat) {
  return page.evaluate(([lon, lat]) => {
    const p = window.tilefarm.map.latLngToContainerPoint([lat, lon]);
    const r = document.getElementById('map').getBoundingClientRect();
    return { x: Math.round(r.left + p.x), y: Math.round(r.top + p.y) };
  }, [lon, lat]);
}

async function upload(page, file, name, zooms) {
  await page.setInputFiles('#file', file);
  await page.fill('#name', name);
  await page.fill('#minzoom', String(zooms[0]));
  await page.fill('#maxzoom', String(zooms[1]));
  await page.click('#send');
}

// Uploads and waits until the page follows the new job.
async function uploadJob(page, file, name, zooms) {
  const before = await page.evaluate(() => window.tilefarm.follower.id);
  await upload(page, file, name, zooms);
  await page.waitForFunction((b) => window.tilefarm.follower.id && window.tilefarm.follower.id !== b, before);
}

async function jobEnds(page, expected, timeout = 300000) {
  await page.waitForFunction(
    () => ['succeeded', 'failed', 'cancelled'].includes(document.getElementById('job-state').textContent),
    null, { timeout },
  );
  const got = await page.textContent('#job-state');
  const error = await page.textContent('#job-error');
  check(got === expected, `the job ended ${got}, not ${expected} (${error})`);
}

async function run() {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, deviceScaleFactor: 1 });
  context.setDefaultTimeout(30000);
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  const tileAnswers = [];
  page.on('response', (r) => { if (new URL(r.url()).pathname.startsWith('/tiles/')) tileAnswers.push({ url: r.url(), status: r.status() }); });
  const badTiles = () => tileAnswers.filter((a) => a.status !== 200);

  // For work on the page: TILEFARM_PAGE=dist/index.html serves the page from
  // web/dist instead of the one built into the binary (the server's settings kept).
  if (process.env.TILEFARM_PAGE) {
    const fs = await import('node:fs');
    await page.route((u) => u.pathname === '/', async (route) => {
      const served = await (await route.fetch()).text();
      const settings = served.match(/<script id="tilefarm-config"[^>]*>.*?<\/script>/)[0];
      const html = fs.readFileSync(process.env.TILEFARM_PAGE, 'utf8')
        .replace(/<script id="tilefarm-config"[^>]*>.*?<\/script>/, () => settings);
      await route.fulfill({ contentType: 'text/html', body: html });
    });
  }

  step = 'open the page';
  await page.goto(base);
  await page.evaluate(() => { window.__notReloaded = true; });
  const limit = await page.textContent('#limit');
  check(limit === env('TILEFARM_MAX_UPLOAD'), `the page shows the limit ${limit}`);
  check(await page.getAttribute('#token', 'type') === 'password', 'the token field is not a password field');

  step = 'tokens';
  await upload(page, env('TILEFARM_SAMPLE'), 'countries', [0, 3]);
  await page.waitForFunction(() => document.getElementById('upload-error').textContent.includes('needs a token'));
  await page.fill('#token', 'not-the-token');
  await page.click('#send');
  await page.waitForFunction(() => document.getElementById('upload-error').textContent.startsWith('Wrong token'));
  log('no token and a wrong token are told apart');

  step = 'upload the countries';
  const first = page.waitForFunction(() => window.tilefarm.follower.id);
  await page.fill('#token', env('TILEFARM_TOKEN'));
  await page.click('#send');
  await first;
  await jobEnds(page, 'succeeded', 120000);
  const size = (await import('node:fs')).statSync(env('TILEFARM_SAMPLE')).size;
  check(await page.evaluate(() => window.tilefarm.sent) === size, 'the upload progress did not reach the file size');
  check(await page.getAttribute('#job-bar', 'data-percent') === '100', 'the bar is not at 100 %');
  check((await page.textContent('#job-text')).includes('(100 %)'), 'the job text does not say 100 %');
  check((await page.textContent('#job-summary')).includes('177 features'), `the summary: ${await page.textContent('#job-summary')}`);
  check(page.url().includes('#layer=') && page.url().includes('&job='), `the URL holds no layer and job: ${page.url()}`);
  await tilesSettled(page);
  const mapArea = { x: 340, y: 0, width: 940, height: 800 };
  let px = await pixels(page, mapArea);
  log(`${(px.share * 100).toFixed(1)} % of the map is data`);
  check(px.share > 0.05, `the map shows almost no data: ${JSON.stringify(px)}`);
  // Africa, around the Congo basin.
  const congo = await pointOf(page, 22, -2);
  const at = await pixels(page, { x: congo.x - 3, y: congo.y - 3, width: 6, height: 6 });
  check(at.data === at.total, `no data drawn at (22, -2): ${JSON.stringify(at)}`);
  check(tileAnswers.length > 0 && badTiles().length === 0, `tile answers: ${JSON.stringify(badTiles().slice(0, 5))} of ${tileAnswers.length}`);
  await page.screenshot({ path: path.join(shots, 'map.png') });
  const countriesLayer = await page.evaluate(() => window.tilefarm.state.layer);
  log(`${tileAnswers.length} tiles, all 200`);

  step = 'a bad file, dropped on the page';
  const fs = await import('node:fs');
  await page.evaluate(([text, name]) => {
    const dt = new DataTransfer();
    dt.items.add(new File([text], name, { type: 'application/geo+json' }));
    for (const type of ['dragenter', 'dragover', 'drop']) {
      document.getElementById('map').dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true }));
    }
  }, [fs.readFileSync(env('TILEFARM_BAD'), 'utf8'), 'broken.geojson']);
  check((await page.textContent('#file-label')).startsWith('broken.geojson'), 'the dropped file was not taken');
  check(await page.isHidden('#drop'), 'the drop overlay stayed');
  const badBefore = await page.evaluate(() => window.tilefarm.follower.id);
  await page.fill('#name', 'broken');
  await page.fill('#maxzoom', '2');
  await page.click('#send');
  await page.waitForFunction((b) => window.tilefarm.follower.id !== b, badBefore);
  await jobEnds(page, 'failed', 60000);
  const why = await page.textContent('#job-error');
  check(why.includes('the ring is not closed') && why.includes('features[0]'), `the message: ${why}`);
  await page.screenshot({ path: path.join(shots, 'bad-file.png') });
  check(await page.evaluate(() => window.tilefarm.state.layer) === countriesLayer, 'a failed upload replaced the map');
  log(`says: ${why}`);

  step = 'a long job';
  await uploadJob(page, env('TILEFARM_WORLD'), 'world', [0, 8]);
  await page.waitForFunction(() => /rendering tiles: [1-9][\d,]* \//.test(document.getElementById('job-text').textContent), null, { timeout: 120000 });
  await page.waitForFunction(() => /tiles\/s, about/.test(document.getElementById('job-rate').textContent), null, { timeout: 60000 });
  await page.screenshot({ path: path.join(shots, 'progress.png') });
  const before = await page.textContent('#job-text');
  check(!/\(100 %\)/.test(before), `the job ended before the server could be stopped: ${before}`);
  log(before);

  step = 'the server stopped';
  const shown = await pixels(page, mapArea);
  await server('stop');
  await page.waitForFunction(() => document.getElementById('notice').textContent.includes('not answering'), null, { timeout: 30000 });
  await page.waitForFunction(() => document.getElementById('notice').textContent.includes('Connection to the job lost'), null, { timeout: 30000 });
  px = await pixels(page, mapArea);
  check(px.share >= shown.share * 0.95, `the map lost what it showed: ${JSON.stringify(px)}, before ${JSON.stringify(shown)}`);
  // New tiles, which cannot load: the coarser ones stay under them. (As a
  // person zooms: a zoom without animation makes Leaflet drop every tile.)
  // Two zooms in, to tiles the browser cannot have cached: the map may have
  // passed through the next zoom as it opened.
  await page.click('.leaflet-control-zoom-in');
  await page.waitForTimeout(500);
  await page.click('.leaflet-control-zoom-in');
  await page.waitForFunction(() => window.tilefarm.failed.size > 0, null, { timeout: 20000 });
  await page.waitForTimeout(2000);
  let broken = await brokenImages(page);
  check(broken.length === 0, `broken images: ${broken.slice(0, 3)}`);
  const failedTiles = await page.evaluate(() => window.tilefarm.failed.size);
  check(failedTiles > 0, 'no tile was asked for while the server was down');
  px = await pixels(page, mapArea);
  check(px.share > 0.05, `zoomed in, the map lost what it showed: ${JSON.stringify(px)}`);
  await upload(page, env('TILEFARM_SAMPLE'), 'while down', [0, 2]);
  await page.waitForFunction(() => document.getElementById('upload-error').textContent.includes('not answering'));
  await page.screenshot({ path: path.join(shots, 'offline.png') });
  broken = await brokenImages(page);
  check(broken.length === 0, `broken images: ${broken.slice(0, 3)}`);
  log(`a notice, ${failedTiles} tiles waiting, no broken image; an upload says the server is not answering`);

  step = 'the server back';
  await server('start');
  await page.waitForFunction(() => document.getElementById('notice').hidden, null, { timeout: 30000 });
  await tilesSettled(page);
  check(await page.evaluate(() => window.tilefarm.failed.size) === 0, 'tiles still failed');
  await page.waitForFunction((b) => document.getElementById('job-text').textContent !== b, before, { timeout: 60000 });
  await jobEnds(page, 'succeeded', 300000);
  check(await page.getAttribute('#job-bar', 'data-percent') === '100', 'the bar is not at 100 %');
  check(await page.evaluate(() => window.__notReloaded === true), 'the page was reloaded');
  await page.waitForFunction(() => window.tilefarm.state.layerInfo && window.tilefarm.state.layerInfo.name === 'world');
  await tilesSettled(page);
  px = await pixels(page, mapArea);
  check(px.share > 0.05, `the new layer shows almost no data: ${JSON.stringify(px)}`);
  check(badTiles().length === 0, `tile answers: ${JSON.stringify(badTiles().slice(0, 5))}`);
  log(`the job came back and succeeded; ${tileAnswers.length} tile answers, all 200`);

  step = 'an edit from the page';
  await page.evaluate(() => window.tilefarm.map.setView([-10, -52], 3, { animate: false }));
  await tilesSettled(page);
  const brazil = await pointOf(page, -52, -10);
  const spot = { x: brazil.x - 3, y: brazil.y + 17, width: 6, height: 6 };
  const drawn = await pixels(page, spot);
  check(drawn.data === drawn.total, `Brazil is not drawn: ${JSON.stringify(drawn)}`);
  await page.mouse.click(brazil.x, brazil.y);
  await page.waitForSelector('.feature-popup');
  const popup = await page.textContent('.leaflet-popup-content');
  check(popup.includes('Brazil') && popup.includes('"076"'), `the popup: ${popup}`);
  await page.screenshot({ path: path.join(shots, 'feature.png') });
  const worldJob = await page.evaluate(() => window.tilefarm.follower.id);
  await page.click('.delete-feature');
  await page.waitForFunction((b) => window.tilefarm.follower.id !== b && document.getElementById('job-kind').textContent === '(edit)', worldJob);
  await jobEnds(page, 'succeeded', 120000);
  await page.waitForFunction(() => window.tilefarm.version === 2, null, { timeout: 30000 });
  await tilesSettled(page);
  await page.waitForFunction(() => document.querySelectorAll('.leaflet-tile-pane > .leaflet-layer').length === 1, null, { timeout: 20000 });
  const after = await pixels(page, spot);
  check(after.data === 0, `Brazil is still drawn after its deletion: ${JSON.stringify(after)} (before ${JSON.stringify(drawn)})`);
  check(await page.evaluate(() => window.__notReloaded === true), 'the page was reloaded');
  check(badTiles().length === 0, `tile answers: ${JSON.stringify(badTiles().slice(0, 5))}`);
  await page.screenshot({ path: path.join(shots, 'edited.png') });
  log(`the deleted feature left the open map: mean colour ${drawn.mean} -> ${after.mean}`);

  step = 'upserts from the page';
  const world = JSON.parse(fs.readFileSync(env('TILEFARM_WORLD'), 'utf8'));
  const upserts = path.join(fs.mkdtempSync(path.join((await import('node:os')).tmpdir(), 'tilefarm-')), 'brazil.geojson');
  fs.writeFileSync(upserts, JSON.stringify({ type: 'FeatureCollection', features: world.features.filter((f) => f.id === '076') }));
  const deleteJob = await page.evaluate(() => window.tilefarm.follower.id);
  await page.click('#edit-box summary');
  await page.setInputFiles('#upsert-file', upserts);
  await page.click('#upsert');
  await page.waitForFunction((b) => window.tilefarm.follower.id !== b, deleteJob);
  fs.rmSync(path.dirname(upserts), { recursive: true });
  await jobEnds(page, 'succeeded', 120000);
  await page.waitForFunction(() => window.tilefarm.version === 3, null, { timeout: 30000 });
  await tilesSettled(page);
  await page.waitForFunction(() => document.querySelectorAll('.leaflet-tile-pane > .leaflet-layer').length === 1, null, { timeout: 20000 });
  const back = await pixels(page, spot);
  check(back.data === back.total, `Brazil is not drawn again after the upsert: ${JSON.stringify(back)}`);
  log('an upserted feature shows on the open map');

  step = 'a reload comes back';
  const url = page.url();
  await page.reload();
  await page.waitForFunction(() => window.tilefarm.state.layerInfo && document.getElementById('job-state').textContent === 'succeeded');
  check(page.url() === url, `the URL changed: ${url} -> ${page.url()}`);
  check((await page.textContent('#layer-name')) === 'world', 'the layer did not come back');

  step = 'a phone';
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 1, isMobile: true, hasTouch: true });
  const small = await phone.newPage();
  small.on('pageerror', (e) => errors.push(String(e)));
  await small.goto(url);
  await small.waitForFunction(() => window.tilefarm.state.layerInfo);
  await tilesSettled(small);
  const fits = await small.evaluate(() => {
    const p = document.getElementById('panel').getBoundingClientRect();
    return { scroll: document.documentElement.scrollWidth, left: p.left, right: p.right, top: p.top };
  });
  check(fits.scroll <= 390 && fits.left >= 0 && fits.right <= 390 && fits.top > 200, `at 390 px: ${JSON.stringify(fits)}`);
  await small.screenshot({ path: path.join(shots, 'phone.png') });
  await phone.close();

  step = 'cancel a job';
  await uploadJob(page, env('TILEFARM_WORLD'), 'cancelled', [0, 8]);
  await page.waitForSelector('#cancel', { state: 'visible' });
  await page.click('#cancel');
  await jobEnds(page, 'cancelled', 60000);
  check(await page.isHidden('#cancel'), 'the cancel button stayed');
  log(await page.textContent('#job-error'));

  step = 'the end';
  check(errors.length === 0, `script errors on the page: ${errors.join('; ')}`);
  log('passed');
}
