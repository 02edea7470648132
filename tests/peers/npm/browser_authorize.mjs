// Drives a real headless Chromium through an OAuth authorization: opens the authorization URL,
// signs in on oidc-provider's development login page (any login and password), confirms its
// consent page, and stops once the browser is sent to the redirect URI. The request to the
// redirect URI goes through, so the client's callback listener really serves it.
//
//   node browser_authorize.mjs --url AUTHORIZATION_URL --redirect-prefix PREFIX
//        [--chromium /usr/bin/chromium] [--login alice] [--password secret] [--timeout-ms 60000]
//        [--outcome-selector '#outcome']
//
// On success it prints one JSON line on stdout:
//   {"final_url": "...", "status": 200, "steps": ["login", "consent"]}
// where `final_url` is the first URL the browser requested under PREFIX, `status` the HTTP status
// the callback answered (null when it did not answer), and `steps` the pages it went through. On
// failure it exits with status 1 and says why on stderr, with the text of the page it was on.
//
// With --outcome-selector the browser also lets the callback's page load (cookies for the
// callback's site go with the request, as in any browser) and adds `"outcome"`: the text of the
// element the selector names on that page, or null when the page has none.
//
// Chromium runs headless with a fresh, empty profile, and every request to a host other than
// loopback fails, so no test traffic leaves the machine (the login page's web font included).
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';

import { importPeer } from './peer_modules.mjs';

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    'redirect-prefix': { type: 'string' },
    chromium: { type: 'string', default: '/usr/bin/chromium' },
    login: { type: 'string', default: 'alice' },
    password: { type: 'string', default: 'correct horse battery staple' },
    'timeout-ms': { type: 'string', default: '60000' },
    'outcome-selector': { type: 'string' },
  },
});

function fail(message) {
  process.stderr.write(`browser_authorize: ${message}\n`);
  process.exit(1);
}

if (!args.url || !args['redirect-prefix']) {
  fail('usage: browser_authorize.mjs --url AUTHORIZATION_URL --redirect-prefix PREFIX');
}
const prefix = args['redirect-prefix'];
const timeout = Number(args['timeout-ms']);
const deadline = Date.now() + timeout;
const remaining = () => Math.max(1, deadline - Date.now());

try {
  await fs.access(args.chromium, fs.constants.X_OK);
} catch {
  fail(`no Chromium at ${args.chromium} (Debian: apt-get install chromium)`);
}

const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);
const FLAGS = [
  // A network fence: everything but loopback goes to a proxy that is not there, so it fails.
  '--proxy-server=http://127.0.0.1:9',
  '--proxy-bypass-list=127.0.0.1;localhost;[::1]',
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

// playwright-core resolves to its CommonJS entry, whose exports arrive as the default export.
const { chromium } = (await importPeer('playwright-core')).default;
const profile = await fs.mkdtemp(path.join(os.tmpdir(), 'switchboard-chromium-'));
let context;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: args.chromium,
    headless: true,
    args: FLAGS,
    timeout: remaining(),
  });
  const result = await authorize(context);
  process.stdout.write(`${JSON.stringify(result)}\n`);
} catch (error) {
  process.stderr.write(`browser_authorize: ${error?.stack ?? error}\n`);
  process.exitCode = 1;
} finally {
  await context?.close().catch(() => {});
  await fs.rm(profile, { recursive: true, force: true }).catch(() => {});
}
// Nothing left to wait for (a pending Playwright timer must not hold the process).
process.exit();

async function authorize(context) {
  // Subresources (such as the login page's web font) for other hosts are refused here; the proxy
  // flags above catch whatever escapes this, redirects included.
  await context.route('**/*', (route) => {
    const { hostname } = new URL(route.request().url());
    return LOOPBACK_HOSTS.has(hostname) ? route.continue() : route.abort('blockedbyclient');
  });
  // Request events also fire for each hop of a redirect chain, which routes do not see.
  let redirected;
  context.on('request', (request) => {
    if (redirected === undefined && request.url().startsWith(prefix)) {
      redirected = request.url();
    }
  });

  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(timeout);
  const callback = page
    .waitForResponse((response) => response.url().startsWith(prefix), { timeout })
    .catch(() => null);

  const steps = [];
  await page.goto(args.url, { timeout: remaining() });
  while (redirected === undefined) {
    if (Date.now() >= deadline) {
      throw new Error(`no redirect to ${prefix} within ${timeout} ms; ${await describe(page)}`);
    }
    const before = page.url();
    if (await page.locator('input[name="prompt"][value="login"]').count()) {
      steps.push('login');
      await page.fill('input[name="login"]', args.login);
      await page.fill('input[name="password"]', args.password);
      await page.click('button[type="submit"]');
    } else if (await page.locator('input[name="prompt"][value="consent"]').count()) {
      steps.push('consent');
      await page.click('button[type="submit"]');
    } else {
      throw new Error(`a page that is neither the login nor the consent page; ${await describe(page)}`);
    }
    // The next page, or the redirect to the client (recorded by the route handler above).
    await page
      .waitForURL((url) => url.href !== before || redirected !== undefined, {
        timeout: remaining(),
        waitUntil: 'load',
      })
      .catch((error) => {
        if (redirected === undefined) throw error;
      });
  }
  let timer;
  const response = await Promise.race([
    callback,
    new Promise((resolve) => {
      timer = setTimeout(resolve, remaining(), null);
    }),
  ]);
  clearTimeout(timer);
  if (!response && !page.url().startsWith(prefix)) {
    throw new Error(`the redirect to ${redirected} got no answer; ${await describe(page)}`);
  }
  const result = { final_url: redirected, status: response ? response.status() : null, steps };
  if (args['outcome-selector']) {
    // The callback is a top-level navigation: wait until its page has loaded, then read it.
    await page.waitForURL((url) => url.href.startsWith(prefix), {
      timeout: remaining(),
      waitUntil: 'load',
    });
    const outcome = page.locator(args['outcome-selector']);
    result.outcome = (await outcome.count()) ? await outcome.first().innerText({ timeout: remaining() }) : null;
  }
  return result;
}

async function describe(page) {
  const text = await page
    .locator('body')
    .innerText({ timeout: 2000 })
    .catch(() => '(no page text)');
  return `at ${page.url()}: ${text.slice(0, 2000)}`;
}
