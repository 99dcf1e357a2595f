/**
 * Debian's headless Chromium through playwright-core for the dashboard tests: a page on Node-RED
 * that records page errors, console errors and any request to another host (refused: nothing here
 * may need the network).
 */
import * as fs from 'fs';
import * as path from 'path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { RedProcess } from '../e2e/harness';
import { ROOT } from '../e2e/red-boot';

export const CHROMIUM = '/usr/bin/chromium';
export const SCREENSHOTS = path.join(ROOT, 'test', 'browser', 'screenshots');

export interface WatchedPage {
  browser: Browser;
  page: Page;
  pageErrors: string[];
  consoleErrors: string[];
  offHost: string[];
}

/** Fails (never skips) without Chromium, saying how to install it. */
export function requireChromium(): void {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} not found: this test needs Debian's chromium package (as root: apt-get update && apt-get install -y chromium; .ci/run installs it when missing)`);
  }
  fs.mkdirSync(SCREENSHOTS, { recursive: true });
}

export async function openWatchedPage(url: string, viewport: { width: number; height: number }): Promise<WatchedPage> {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = await browser.newPage({ viewport });
  const watched: WatchedPage = { browser, page, pageErrors: [], consoleErrors: [], offHost: [] };
  page.on('pageerror', (err) => watched.pageErrors.push(err.message));
  page.on('console', (m) => {
    if (m.type() === 'error') watched.consoleErrors.push(m.text());
  });
  await page.route('**/*', (route) => {
    const u = new URL(route.request().url());
    if (u.hostname === '127.0.0.1' || u.protocol === 'data:' || u.protocol === 'blob:') return route.continue();
    watched.offHost.push(u.href);
    return route.abort();
  });
  await page.goto(url);
  return watched;
}

/** The dashboard is a PWA and announces its service worker ("App is offline ready") in a toast that would cover part of a screenshot. */
export async function closeOfflineToast(page: Page): Promise<void> {
  const toast = page.getByRole('button', { name: 'Close' });
  if (await toast.count()) {
    await toast.first().click();
    await page.getByText('App is offline ready').waitFor({ state: 'hidden' });
  }
}

/** A Node-RED of its own and its editor in Chromium, once the palette has loaded. */
export async function openEditor(viewport: { width: number; height: number }): Promise<{ red: RedProcess; watched: WatchedPage }> {
  requireChromium();
  const red = await RedProcess.start();
  const watched = await openWatchedPage(`${red.url}/`, viewport);
  await watched.page.locator('#red-ui-palette .red-ui-palette-node').first().waitFor({ state: 'visible', timeout: 60000 });
  return { red, watched };
}

/** As a user starts: an ncs2-infer dragged from the palette, its dialog, and the new graph config its pencil button opens. */
export async function addInferAndNewGraph(page: Page): Promise<void> {
  const paletteNode = page.locator('.red-ui-palette-node[data-palette-type="ncs2-infer"]');
  await paletteNode.scrollIntoViewIfNeeded();
  await paletteNode.dragTo(page.locator('#red-ui-workspace-chart'), { targetPosition: { x: 320, y: 200 } });
  await page.locator('#red-ui-workspace-chart g.red-ui-flow-node rect.red-ui-flow-node').last().dblclick();
  await page.locator('#node-input-btn-graph-add').click();
  await page.locator('#node-config-input-preset').waitFor({ state: 'visible' });
}
