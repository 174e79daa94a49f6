// Browser end-to-end tests of the operators' console (`/console`), run by
// tests/tests/console.rs against a seeded `starledger serve`:
//
//     node --test tests/console/console.test.mjs
//
// One Chromium (Debian's, driven by playwright-core; no browser download), one page, the
// steps in order. Everything comes from the environment:
//
//   CONSOLE_BASE              http://127.0.0.1:PORT of the server
//   ADMIN_KEY, AUDITOR_KEY, SERVICE_KEY   the API keys of the three roles
//   USER_ID, USERNAME         a registered, funded user (USERNAME without `@`)
//   DELIVER_ID, FAIL_ID       two paid, never-confirmed (`sent`) purchases: one to deliver,
//                             one to fail with force
//   HOLD_ID                   optional: a third `sent` purchase left alone, which the auditor
//                             sees listed without a deliver form and cannot deliver
//   SCREENSHOTS               a directory: overview.png and user.png (1280x800) are written there
//   FAILURES                  optional: a directory for a screenshot of each failed step
//   CHROMIUM                  optional: the browser (default /usr/bin/chromium)
//
// Each step signs in as the role it needs if the page is not already signed in as it, so a
// failed step does not fail the rest; a failure names the page's URL and shows its markup.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

function required(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set (tests/tests/console.rs sets it; see the top of this file)`);
  }
  return value;
}

const BASE = required('CONSOLE_BASE').replace(/\/+$/, '');
const KEYS = {
  admin: required('ADMIN_KEY'),
  auditor: required('AUDITOR_KEY'),
  service: required('SERVICE_KEY'),
};
const USER_ID = required('USER_ID');
const USERNAME = required('USERNAME').replace(/^@/, '');
const DELIVER_ID = required('DELIVER_ID');
const FAIL_ID = required('FAIL_ID');
const HOLD_ID = process.env.HOLD_ID || '';
const SCREENSHOTS = required('SCREENSHOTS');
const FAILURES = process.env.FAILURES || '';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

// Generous: a debug build on a busy 2-core machine. Nothing asserts on how long anything took.
const WAIT = 30_000;
const LIVE_WAIT = 60_000;
const STEP_TIMEOUT = 180_000;

let browser;
let context;
let page;
/** The main document's last response (status, URL), for failure messages. */
let lastDocument = null;
/** Script errors, console errors and dialogs seen so far, for failure messages. */
const noises = [];

before(async () => {
  mkdirSync(SCREENSHOTS, { recursive: true });
  if (FAILURES) mkdirSync(FAILURES, { recursive: true });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  context = await browser.newContext({
    viewport: { width: 1280, height: 800 },
    locale: 'en-US',
    timezoneId: 'UTC',
  });
  // In every document, before its own script: note in sessionStorage (which outlives a reload
  // in this tab) each state a script gives an element's data-state, so a step can tell that a
  // job's status changed in place, not by a reload (the parser's attributes are no mutation).
  await context.addInitScript(() => {
    new MutationObserver((records) => {
      for (const { target } of records) {
        if (target.id) sessionStorage.setItem(`live:${target.id}`, target.getAttribute('data-state') ?? '');
      }
    }).observe(document, { subtree: true, attributes: true, attributeFilter: ['data-state'] });
  });
  page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  page.setDefaultNavigationTimeout(WAIT);
  page.on('response', (response) => {
    const request = response.request();
    if (request.isNavigationRequest() && request.frame() === page.mainFrame()) {
      lastDocument = { status: response.status(), method: request.method(), url: response.url() };
    }
  });
  page.on('pageerror', (error) => noises.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error' || message.type() === 'warning') {
      const where = message.location()?.url;
      noises.push(`console ${message.type()}: ${message.text()}${where ? ` (${where})` : ''}`);
    }
  });
  // A confirm() before a destructive action is accepted, as an operator would.
  page.on('dialog', (dialog) => {
    noises.push(`dialog (${dialog.type()}, accepted): ${dialog.message()}`);
    dialog.accept().catch(() => {});
  });
});

after(async () => {
  if (noises.length) {
    console.log(`what the browser reported during the run:\n  ${noises.join('\n  ')}`);
  }
  await browser?.close();
});

// ---------------------------------------------------------------------------------------------
// Helpers

const url = (path) => `${BASE}${path}`;
const pathname = () => new URL(page.url()).pathname;

/** The page's URL, its last document response and its markup, for a failure message. */
async function describePage() {
  if (!page) return '(no page: the browser did not start)';
  let markup;
  try {
    const html = await page.content();
    const body = html.indexOf('<body');
    markup = (body >= 0 ? html.slice(body) : html).replace(/\s+/g, ' ');
    if (markup.length > 6000) markup = `${markup.slice(0, 6000)} …[${markup.length - 6000} more characters]`;
  } catch (error) {
    markup = `(could not read the page: ${error.message})`;
  }
  const last = lastDocument
    ? `${lastDocument.method} ${lastDocument.url} answered ${lastDocument.status}`
    : '(none)';
  const recent = noises.slice(-10);
  return [
    `  page URL: ${page.url()}`,
    `  last document: ${last}`,
    recent.length ? `  browser reported:\n    ${recent.join('\n    ')}` : null,
    `  page markup: ${markup}`,
  ]
    .filter(Boolean)
    .join('\n');
}

/** A test whose failure names the page it was on and shows what that page showed. */
function step(name, body) {
  test(name, { timeout: STEP_TIMEOUT }, async () => {
    try {
      await body();
    } catch (error) {
      const where = await describePage();
      if (FAILURES && page) {
        const file = join(FAILURES, `${name.replace(/[^a-z0-9]+/gi, '-').slice(0, 60)}.png`);
        await page.screenshot({ path: file, fullPage: true }).catch(() => {});
      }
      throw new Error(`${name}: ${error.message}\n${where}`, { cause: error });
    }
  });
}

/** Runs `action` (a click, a submit) and waits for the navigation it starts; the final
 * document's response (after redirects). */
async function navigating(action) {
  const [response] = await Promise.all([page.waitForNavigation({ timeout: WAIT }), action()]);
  return response;
}

async function goto(path) {
  const response = await page.goto(url(path), { waitUntil: 'load' });
  assert.ok(response, `GET ${path} gave no response`);
  return response;
}

/** Submits `form` (a selector) by clicking its submit button, as a person would. */
async function submit(form) {
  const button = page.locator(`${form} [type=submit]`);
  if ((await button.count()) > 0) {
    await button.first().click();
  } else {
    await page.locator(form).evaluate((element) => element.requestSubmit());
  }
}

/** Waits until `selector` is in the document (live updates included). */
async function expectPresent(selector, timeout = WAIT) {
  try {
    await page.locator(selector).first().waitFor({ state: 'attached', timeout });
  } catch (error) {
    throw new Error(`expected ${selector} on the page within ${timeout / 1000} s`, { cause: error });
  }
}

async function count(selector) {
  return page.locator(selector).count();
}

async function text(selector) {
  await expectPresent(selector);
  return ((await page.locator(selector).first().textContent()) ?? '').trim();
}

/** Signs in with `key` from a fresh session; the response of the navigation that follows. */
async function signInWith(key) {
  await context.clearCookies();
  await goto('/console/sign-in');
  await page.locator('#sign-in input[name=key]').fill(key);
  return navigating(() => page.locator('#sign-in button[type=submit]').click());
}

/** Makes sure the page is signed in as `role`, signing in if it is not. */
async function ensureRole(role) {
  await goto('/console/overview');
  if (pathname() === '/console/overview' && (await count(`#who[data-role=${role}]`)) === 1) return;
  await signInWith(KEYS[role]);
  if ((await count(`#who[data-role=${role}]`)) !== 1) {
    throw new Error(`signing in with the ${role} key did not give a page with #who[data-role=${role}]`);
  }
}

/**
 * Builds a form in the page and submits it, as a forged or hand-made request would: POST
 * `action` with `fields` (no CSRF token unless given). The response of the navigation.
 */
async function postForm(action, fields) {
  return navigating(() =>
    page.evaluate(
      ({ action, fields }) => {
        const form = document.createElement('form');
        form.method = 'post';
        form.action = action;
        for (const [name, value] of Object.entries(fields)) {
          const input = document.createElement('input');
          input.type = 'hidden';
          input.name = name;
          input.value = value;
          form.appendChild(input);
        }
        document.body.appendChild(form);
        // After this evaluation returns, so the navigation does not tear down its context.
        setTimeout(() => form.submit(), 0);
      },
      { action, fields },
    ),
  );
}

/** The names of the cookies the sign-in POST's answer set (deletions left out), found by
 * walking back the redirects of the navigation that followed it (its final `response`). */
async function cookiesSetBySignIn(response) {
  let request = response?.request();
  while (request && request.method() !== 'POST') request = request.redirectedFrom();
  assert.ok(request, 'signing in was a POST');
  const answer = await request.response();
  assert.ok(answer, 'the sign-in POST got an answer');
  return (await answer.headersArray())
    .filter(({ name }) => name.toLowerCase() === 'set-cookie')
    .flatMap(({ value }) => value.split('\n'))
    .filter((line) => !/;\s*max-age=0(;|$)/i.test(line) && !/expires=[^;]*1970/i.test(line))
    .map((line) => line.split(';')[0].trim())
    .filter((pair) => pair.includes('=') && pair.slice(pair.indexOf('=') + 1) !== '')
    .map((pair) => pair.slice(0, pair.indexOf('=')));
}

const DECIMAL = /^-?\d+(\.\d+)?$/;

// ---------------------------------------------------------------------------------------------
// The steps, in order

step('a. the service key cannot sign in, and a wrong key is refused', async () => {
  await signInWith(KEYS.service);
  assert.equal(pathname(), '/console/sign-in', 'the service key stays on the sign-in page');
  await expectPresent('#flash[data-code=service_key]');
  assert.equal(await count('#who'), 0, 'the service key must not get a signed-in page');
  await signInWith('not-a-key-of-this-deployment-0000');
  assert.equal(pathname(), '/console/sign-in', 'a wrong key stays on the sign-in page');
  await expectPresent('#flash[data-code=bad_key]');
  assert.equal(await count('#who'), 0, 'a wrong key must not get a signed-in page');
});

step('b. an admin signs in and sees the overview', async () => {
  await context.clearCookies();
  await goto('/console');
  assert.equal(pathname(), '/console/sign-in', 'an unauthenticated /console goes to the sign-in page');
  await page.locator('#sign-in input[name=key]').fill(KEYS.admin);
  const landed = await navigating(() => page.locator('#sign-in button[type=submit]').click());
  assert.equal(pathname(), '/console/overview', 'signed in, the console opens on the overview');
  await expectPresent('#who[data-role=admin]');
  const head = await text('#log-head');
  assert.match(head, /^\d+$/, `#log-head is the log's head position, got ${JSON.stringify(head)}`);
  assert.ok(Number(head) > 0, `#log-head is positive, got ${head}`);
  const projectors = await count('table#projectors tr[data-projector]');
  assert.ok(projectors >= 3, `table#projectors lists at least 3 projectors, got ${projectors}`);
  await page.screenshot({ path: join(SCREENSHOTS, 'overview.png') });

  const response = await goto('/console/overview');
  assert.equal(response.status(), 200, 'GET /console/overview');
  const csp = (await response.allHeaders())['content-security-policy'];
  assert.ok(csp, 'the overview has a Content-Security-Policy header');
  assert.ok(csp.includes("script-src 'self'"), `CSP has script-src 'self': ${csp}`);
  assert.ok(!csp.includes('unsafe-inline'), `CSP allows no unsafe-inline: ${csp}`);

  // The session cookie: what the sign-in POST's answer set (not what it deleted, nor the
  // language), as the browser keeps it.
  const set = await cookiesSetBySignIn(landed);
  const cookies = await context.cookies();
  const described = cookies.map((c) => `${c.name} (httpOnly ${c.httpOnly}, sameSite ${c.sameSite})`).join(', ');
  const session = cookies.filter((cookie) => set.includes(cookie.name) && !/lang|locale/i.test(cookie.name));
  assert.ok(
    session.length > 0,
    `the sign-in answer sets a session cookie the browser keeps; it set [${set.join(', ')}], the browser has: ${described || 'none'}`,
  );
  for (const cookie of session) {
    assert.equal(cookie.httpOnly, true, `cookie ${cookie.name} is HttpOnly; cookies: ${described}`);
    assert.equal(cookie.sameSite, 'Strict', `cookie ${cookie.name} is SameSite=Strict; cookies: ${described}`);
  }
});

step('c. find a user by @username and by id, and read a balance at a moment', async () => {
  await ensureRole('admin');
  await goto('/console/users');
  await page.locator('#find-user input[name=q]').fill(`@${USERNAME}`);
  await navigating(() => submit('#find-user'));
  assert.equal(pathname(), `/console/users/${USER_ID}`, `@${USERNAME} opens the user's page`);
  assert.equal(await text('#user-id'), USER_ID, '#user-id');
  const total = await text('#balance-total');
  assert.match(total, DECIMAL, `#balance-total is a decimal number, got ${JSON.stringify(total)}`);
  const history = await count('table#history tbody tr');
  assert.ok(history >= 1, `table#history has at least one row, got ${history}`);
  await page.screenshot({ path: join(SCREENSHOTS, 'user.png') });

  await page.locator('#balance-at input[name=at]').fill('2000-01-01T00:00:00Z');
  await submit('#balance-at');
  await expectPresent('#balance-at-result[data-total="0"]');
  await page.locator('#balance-at input[name=at]').fill(new Date().toISOString());
  await submit('#balance-at');
  await expectPresent(`#balance-at-result[data-total="${total}"]`);

  await goto('/console/users');
  await page.locator('#find-user input[name=q]').fill(USER_ID);
  await navigating(() => submit('#find-user'));
  assert.equal(pathname(), `/console/users/${USER_ID}`, 'the numeric id opens the same page');
  assert.equal(await text('#user-id'), USER_ID, '#user-id');
});

step('d. a forged form without a CSRF token is refused and changes nothing', async () => {
  await ensureRole('admin');
  await goto('/console/purchases');
  const response = await postForm(`/console/purchases/${DELIVER_ID}/deliver`, {});
  assert.ok(response, 'the forged POST gave no response');
  assert.equal(response.status(), 403, 'a POST without a CSRF token answers 403');
  await expectPresent('#error[data-code=csrf]');
  await goto('/console/purchases');
  assert.equal(
    await count(`tr[data-purchase="${DELIVER_ID}"]`),
    1,
    `purchase ${DELIVER_ID} is still listed as open after the forged POST`,
  );
});

step('e. an admin delivers a stuck purchase', async () => {
  await ensureRole('admin');
  await goto('/console/purchases');
  await navigating(() => page.locator(`tr[data-purchase="${DELIVER_ID}"] form.deliver button`).click());
  assert.equal(pathname(), '/console/purchases', 'delivering returns to the purchases');
  await expectPresent('#flash[data-code=delivered]');
  assert.equal(await count(`tr[data-purchase="${DELIVER_ID}"]`), 0, `purchase ${DELIVER_ID} is no longer listed`);
});

step('f. failing a paid purchase takes force', async () => {
  await ensureRole('admin');
  await goto('/console/purchases');
  await navigating(() => page.locator(`tr[data-purchase="${FAIL_ID}"] a.fail`).click());
  await expectPresent('form#fail');

  await page.locator('#fail textarea[name=reason]').fill('test: Fragment never confirmed');
  assert.equal(await page.locator('#fail input[name=force]').isChecked(), false, 'force starts unchecked');
  await navigating(() => submit('form#fail'));
  await expectPresent('#flash[data-code=payment_recorded]');
  await expectPresent('form#fail');

  await page.locator('#fail textarea[name=reason]').fill('test: recipient never got them');
  await page.locator('#fail input[name=force]').check();
  await navigating(() => submit('form#fail'));
  assert.equal(pathname(), '/console/purchases', 'failing returns to the purchases');
  await expectPresent('#flash[data-code=failed]');
  assert.equal(await count(`tr[data-purchase="${FAIL_ID}"]`), 0, `purchase ${FAIL_ID} is no longer listed`);
});

/**
 * Submits `form`, then waits until `selector` (`#id[data-state=…]`) shows the job's end without
 * the test reloading: either the page it landed on already showed the end, or the page's
 * script turned the element's data-state to `end` in place (the page may reload itself after).
 */
async function watchJob(form, id, end) {
  await page.evaluate((key) => sessionStorage.removeItem(key), `live:${id}`);
  await navigating(() => submit(form));
  await expectPresent(`#${id}`);
  const landed = await page.locator(`#${id}`).getAttribute('data-state').catch(() => null);
  await expectPresent(`#${id}[data-state=${end}]`, LIVE_WAIT);
  const live = await page.evaluate((key) => sessionStorage.getItem(key), `live:${id}`);
  console.log(`#${id}: ${landed} on the page the submit landed on; the page's script set ${live ?? 'nothing'}`);
  assert.ok(
    landed === end || live === end,
    `#${id} turned ${end} in place (the page's script follows the job): it showed ${landed} after the submit, ` +
      `and the script last set ${live === null ? 'nothing' : JSON.stringify(live)}`,
  );
}

step('g. a rebuild of every projection, watched live to the end', async () => {
  await ensureRole('admin');
  await goto('/console/projections');
  await page.locator('#rebuild select[name=projection]').selectOption('all');
  await watchJob('#rebuild', 'rebuild-status', 'done');
  assert.ok((await count('#rebuild-status progress')) >= 1, '#rebuild-status shows a progress bar');
});

step('h. a verification of the whole ledger, watched live to the end', async () => {
  await ensureRole('admin');
  await goto('/console/audit');
  await page.locator('#verify select[name=scope]').selectOption('all');
  await watchJob('#verify', 'audit-job', 'succeeded');
  await expectPresent('#verify-result[data-sound=true]');
});

step('i. the event log, and one event hash checked', async () => {
  await ensureRole('admin');
  await goto('/console/events');
  const rows = await count('table#events tbody tr[data-position]');
  assert.ok(rows >= 1, `table#events lists at least one event, got ${rows}`);
  // A link to a page of its own, or checked in place: either way the result shows up.
  await page.locator('a.verify-hash').first().click();
  await expectPresent('#hash-check[data-ok=true]');
});

step('j. signing out ends the session', async () => {
  await ensureRole('admin');
  await navigating(() => page.locator('#sign-out button').click());
  await goto('/console/overview');
  assert.equal(pathname(), '/console/sign-in', 'after signing out the overview asks to sign in');
});

step('k. an auditor sees everything and can change nothing', async () => {
  await signInWith(KEYS.auditor);
  await expectPresent('#who[data-role=auditor]');

  await goto('/console/purchases');
  await expectPresent('#who[data-role=auditor]');
  if (HOLD_ID) {
    assert.equal(await count(`tr[data-purchase="${HOLD_ID}"]`), 1, `the auditor sees open purchase ${HOLD_ID}`);
  }
  assert.equal(await count('form.deliver'), 0, 'the auditor gets no deliver forms');
  await goto('/console/projections');
  await expectPresent('#who[data-role=auditor]');
  assert.equal(await count('#rebuild'), 0, 'the auditor gets no rebuild form');

  const csrf = await page.locator('#sign-out input[name=csrf]').inputValue();
  assert.ok(csrf, 'the sign-out form carries a CSRF token');
  const target = HOLD_ID || DELIVER_ID;
  const attempts = [
    [`/console/purchases/${target}/deliver`, { csrf }],
    [`/console/purchases/${FAIL_ID}/fail`, { csrf, reason: 'test: an auditor tries', force: 'on' }],
    ['/console/projections/rebuild', { csrf, projection: 'all' }],
  ];
  for (const [action, fields] of attempts) {
    const response = await postForm(action, fields);
    assert.ok(response, `POST ${action} gave no response`);
    assert.equal(response.status(), 403, `the auditor's POST ${action} answers 403`);
    await expectPresent('#error[data-code=forbidden]');
  }

  const audit = await goto('/console/audit');
  assert.equal(audit.status(), 200, 'the auditor opens the audit page');
  await expectPresent('#who[data-role=auditor]');
  assert.equal(await count('form#verify'), 1, 'the auditor may start a verification');
});

step('l. the console speaks Russian and English', async () => {
  await ensureRole('auditor');
  await navigating(() => page.locator('a[hreflang=ru]').first().click());
  await expectPresent('html[lang=ru]');
  await navigating(() => page.locator('a[hreflang=en]').first().click());
  await expectPresent('html[lang=en]');
});

step('m. no page broke its Content-Security-Policy or threw a script error', async () => {
  // Refused forms answer 4xx, which Chromium reports as failed resource loads: expected. What
  // must never appear is a blocked inline script or style, a blocked host, or a script error.
  const broken = noises.filter(
    (noise) => noise.startsWith('page error:') || /Content Security Policy|Refused to/i.test(noise),
  );
  assert.deepEqual(broken, [], 'the browser reported a CSP violation or a script error');
});
