// Builds the page into dist/index.html: one file with the script and styles
// inlined (Leaflet's images as data URLs), so the tilefarm binary embeds it
// and nothing is fetched from anywhere else at run time.
//
//   npm ci && npm run build      writes dist/index.html
//   node build.mjs --check       fails if dist/index.html is not what the sources build
//
// dist/ is committed, so building tilefarm needs no node; the browser test
// (cli/tests/browser.rs) runs the check.
import * as esbuild from 'esbuild';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';

const here = new URL('.', import.meta.url);
const common = {
  bundle: true,
  minify: true,
  write: false,
  legalComments: 'eof',
  target: ['chrome110', 'firefox110', 'safari16'],
  loader: { '.png': 'dataurl', '.svg': 'dataurl' },
  logLevel: 'warning',
};
const js = await esbuild.build({ ...common, entryPoints: [new URL('src/main.js', here).pathname], format: 'iife' });
const css = await esbuild.build({ ...common, entryPoints: [new URL('src/style.css', here).pathname] });
const text = (r) => r.outputFiles.map((f) => f.text).join('');
// Neither may close its element early.
const script = text(js).replaceAll('</script', '<\\/script');
const style = text(css).replaceAll('</style', '<\\/style');
const page = readFileSync(new URL('index.html', here), 'utf8')
  .replace('<!-- STYLE -->', () => `<style>${style}</style>`)
  .replace('<!-- SCRIPT -->', () => `<script>${script}</script>`);
const out = new URL('dist/index.html', here);
if (process.argv.includes('--check')) {
  let old = '';
  try { old = readFileSync(out, 'utf8'); } catch (e) { /* missing */ }
  if (old !== page) {
    console.error('web/dist/index.html is not what web/ builds: run (cd web && npm ci && npm run build) and commit web/dist');
    process.exit(1);
  }
  console.log('web/dist/index.html is up to date');
} else {
  mkdirSync(new URL('dist/', here), { recursive: true });
  writeFileSync(out, page);
  console.log(`dist/index.html: ${page.length} bytes`);
}
