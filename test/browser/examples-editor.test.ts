/**
 * Every example as a user meets it in the Node-RED editor (Debian's headless Chromium driven by
 * playwright-core): fetched through the same library route Import > Examples uses, imported into
 * the editor, with no node flagged invalid (node.valid === false, the red triangle) and deployed
 * with no "not properly configured" confirmation; and a fresh ncs2-infer with a new graph and a new
 * device config, all left at their defaults, deploys with no warning either. Run by
 * `npm run test:browser`, not by `npm test`; without /usr/bin/chromium it fails and says how to
 * install it (never skips).
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import type { Page } from 'playwright-core';
import type { RedProcess } from '../e2e/harness';
import { ROOT } from '../e2e/red-boot';
import { addInferAndNewGraph, openEditor, type WatchedPage } from './chromium';

const MODULE = '@edge-infer/node-red-ncs2';
const EXAMPLES = fs
  .readdirSync(path.join(ROOT, 'examples'))
  .filter((f) => f.endsWith('.json'))
  .map((f) => f.replace(/\.json$/, ''));

interface EditorNode {
  id: string;
  type: string;
  name?: string;
  valid?: boolean;
  validationErrors?: string[];
  _def?: { defaults: Record<string, { value?: unknown }> };
  [property: string]: unknown;
}

// Globals of the editor page (the functions passed to page.evaluate run there, not in Node).
declare const RED: {
  nodes: {
    clear(): void;
    eachNode(cb: (n: EditorNode) => void): void;
    eachConfig(cb: (n: EditorNode) => void): void;
    dirty(d?: boolean): boolean;
  };
  view: { importNodes(nodes: unknown[], options?: Record<string, unknown>): void; redraw(full?: boolean): void; state(): number };
  state: { DEFAULT: number };
  editor: { validateNode(n: EditorNode): boolean };
  workspaces: { active(): string; add(): void };
};
declare const $: { get(url: string): Promise<unknown> };

/** Nodes the editor flags invalid, with the properties it names (config nodes included). */
async function invalidNodes(page: Page): Promise<string[]> {
  return page.evaluate(() => {
    const bad: string[] = [];
    const check = (n: EditorNode): void => {
      if (!n._def) return;
      RED.editor.validateNode(n);
      if (n.valid === false) bad.push(`${n.type} ${n.name || n.id}: ${(n.validationErrors ?? []).join(', ')}`);
    };
    RED.nodes.eachNode(check);
    RED.nodes.eachConfig(check);
    return bad;
  });
}

/**
 * Opens the dialog of every node of this package (flow and config nodes) as a double-click does
 * and lists what is wrong there: a select showing nothing, a field marked wrong. Closes each with Cancel.
 */
async function dialogProblems(page: Page): Promise<string[]> {
  const ids = await page.evaluate(() => {
    const found: Array<{ id: string; type: string; config: boolean }> = [];
    RED.nodes.eachNode((n) => {
      if (n.type.startsWith('ncs2-')) found.push({ id: n.id, type: n.type, config: false });
    });
    RED.nodes.eachConfig((n) => {
      if (n.type.startsWith('ncs2-')) found.push({ id: n.id, type: n.type, config: true });
    });
    return found;
  });
  const problems: string[] = [];
  for (const { id, type, config } of ids) {
    await page.evaluate(
      ({ id, type, config }) => {
        const editor = RED.editor as unknown as { edit(n: unknown): void; editConfig(name: string, type: string, id: string): void };
        if (config) editor.editConfig('', type, id);
        else editor.edit((RED.nodes as unknown as { node(id: string): unknown }).node(id));
      },
      { id, type, config },
    );
    const tray = page.locator('.red-ui-tray').last();
    await tray.locator('#node-dialog-cancel, #node-config-dialog-cancel').first().waitFor({ state: 'visible' });
    // The kinds of a device come from the runtime: let that answer arrive.
    await page.waitForTimeout(300);
    const found = await tray.evaluate((tray) => {
      const out: string[] = [];
      const el = tray as unknown as { querySelectorAll(selector: string): { forEach(cb: (e: unknown) => void): void } };
      el.querySelectorAll('select').forEach((s) => {
        // selectedIndex -1: the value is none of the options, so the select shows nothing.
        const select = s as unknown as { id: string; selectedIndex: number; options: { length: number } };
        if (select.id && select.options.length > 0 && select.selectedIndex === -1) out.push(`${select.id} is blank`);
      });
      el.querySelectorAll('.input-error').forEach((e) => out.push(`${(e as unknown as { id: string }).id} is marked wrong`));
      return out;
    });
    problems.push(...found.map((f) => `${type} ${id}: ${f}`));
    await tray.locator('#node-dialog-cancel, #node-config-dialog-cancel').first().click();
    await tray.waitFor({ state: 'detached' });
  }
  return problems;
}

/** Clicks Deploy; fails on the confirmation dialog (invalid, unknown or unused nodes) and waits for success. */
/**
 * Imported nodes follow the mouse until a click puts them down, as after Import in the menu; only
 * then is the workspace changed (and Deploy enabled). On a loaded host the first click can come
 * before the editor attaches the nodes to the mouse, so click until they are down.
 */
async function putDownImport(page: Page): Promise<void> {
  for (let attempt = 0; attempt < 10; attempt++) {
    await page.mouse.move(600, 500);
    await page.mouse.click(600, 500);
    const placed = await page
      .waitForFunction(() => RED.view.state() === RED.state.DEFAULT && RED.nodes.dirty(), undefined, { timeout: 1000 })
      .then(() => true, () => false);
    if (placed) return;
  }
  throw new Error(`the imported nodes were not put down: view state ${await page.evaluate(() => RED.view.state())}, dirty ${await page.evaluate(() => RED.nodes.dirty())}`);
}

async function deployWithoutWarning(page: Page): Promise<void> {
  const confirm = page.locator('#red-ui-deploy-dialog-confirm-deploy-deploy');
  const done = page.locator('.red-ui-notification', { hasText: 'Successfully deployed' });
  // The previous deploy's notification closes on its own; this deploy's must be its own.
  await done.first().waitFor({ state: 'hidden', timeout: 30000 });
  await page.locator('#red-ui-header-button-deploy:not(.disabled)').click();
  await Promise.race([confirm.waitFor({ state: 'visible', timeout: 30000 }), done.first().waitFor({ state: 'visible', timeout: 30000 })]).catch(async (err: Error) => {
    await page.screenshot({ path: '/tmp/editor-deploy.png' });
    throw err;
  });
  if (await confirm.isVisible()) {
    const text = await page.locator('.red-ui-notification').last().innerText();
    throw new Error(`Deploy asked for confirmation: ${text}`);
  }
}

describe('examples and fresh nodes in the Node-RED editor (headless Chromium)', function () {
  this.timeout(180000);

  let red: RedProcess | undefined;
  let watched: WatchedPage | undefined;
  let page: Page;

  before(async function () {
    ({ red, watched } = await openEditor({ width: 1280, height: 800 }));
    page = watched.page;
  });

  after(async function () {
    await watched?.browser.close();
    await red?.stop();
  });

  afterEach(function () {
    assert.deepEqual(watched?.pageErrors, [], `the editor threw in the page: ${watched?.pageErrors.join(' | ')}`);
  });

  it('lists every example under Import > Examples', async function () {
    const listed = await page.evaluate((module) => $.get(`library/examples/flows/${module}`), MODULE);
    const names = (listed as Array<{ fn?: string } | string>).map((e) => (typeof e === 'string' ? e : e.fn ?? ''));
    assert.deepEqual([...names].sort(), [...EXAMPLES].sort(), `examples listed: ${JSON.stringify(listed)}`);
  });

  for (const example of EXAMPLES) {
    it(`${example}: imports with no invalid node and deploys with no confirmation`, async function () {
      await page.evaluate(async ({ module, name }) => {
        const flow = (await $.get(`library/examples/flows/${module}/${name}`)) as unknown[] | string;
        RED.nodes.clear();
        RED.view.importNodes(typeof flow === 'string' ? JSON.parse(flow) : flow, { addFlow: true });
        RED.view.redraw(true);
      }, { module: MODULE, name: example });
      await putDownImport(page);
      assert.deepEqual(await invalidNodes(page), [], `${example}: nodes flagged invalid`);
      assert.deepEqual(await dialogProblems(page), [], `${example}: dialogs`);
      await deployWithoutWarning(page).catch((err: Error) => {
        throw new Error(`${err.message}\nNode-RED's log:\n${red?.logs()}`);
      });
    });
  }

  it('the two dashboard examples share one ui-base and deploy together', async function () {
    const bases = await page.evaluate(async (module) => {
      const read = async (name: string): Promise<Array<{ id: string; type: string }>> => {
        const flow = (await $.get(`library/examples/flows/${module}/${name}`)) as string | Array<{ id: string; type: string }>;
        return typeof flow === 'string' ? JSON.parse(flow) : flow;
      };
      RED.nodes.clear();
      RED.view.importNodes(await read('dashboard'), { addFlow: true, touchImport: true });
      const second = await read('detections-dashboard');
      // What the import dialog's "Replace" does for the nodes it says already exist (the shared ui-base and theme).
      const existing: Record<string, string> = {};
      RED.nodes.eachConfig((n) => {
        if (second.some((m) => m.id === n.id)) existing[n.id] = 'replace';
      });
      RED.view.importNodes(second, { addFlow: true, touchImport: true, importMap: existing });
      const found: string[] = [];
      RED.nodes.eachConfig((n) => {
        if (n.type === 'ui-base') found.push(n.id);
      });
      return { found, replaced: Object.keys(existing).sort() };
    }, MODULE);
    assert.deepEqual(bases.found.length, 1, `ui-base nodes: ${bases.found.join(', ')}`);
    assert.deepEqual(bases.replaced, ['a5d0000000000002', 'a5d0000000000003']);
    assert.deepEqual(await invalidNodes(page), []);
    await deployWithoutWarning(page);
    const log = red!.logs();
    assert.ok(!/multiple ui-base/i.test(log), `Node-RED's log:\n${log}`);
  });

  it('a fresh ncs2-infer with a new graph and a new device config, all at their defaults, is valid and deploys with no warning', async function () {
    await page.evaluate(() => {
      RED.nodes.clear();
      RED.workspaces.add();
      RED.view.redraw(true);
    });
    // As a user does it: drag the node from the palette, open it, add a graph config with the pencil
    // button and a device config from there, press Add, Add and Done without typing anything.
    await addInferAndNewGraph(page);
    await page.locator('#node-config-input-btn-device-add').click();
    await page.locator('#node-config-input-queueCapacity').waitFor({ state: 'attached' });
    // The editor validates a dialog's fields as it fills them in; on a loaded host that can lag the
    // tray opening, so a mark has a few seconds to clear before it counts.
    const marked = async (): Promise<number> => {
      const marks = page.locator('.red-ui-tray').last().locator('.input-error');
      await marks.first().waitFor({ state: 'detached', timeout: 5000 }).catch(() => undefined);
      return marks.count();
    };
    assert.equal(await marked(), 0, 'the new device dialog marks a field wrong');
    await page.locator('.red-ui-tray').last().locator('#node-config-dialog-ok').click();
    await page.locator('#node-config-input-queueCapacity').waitFor({ state: 'detached' });
    assert.equal(await page.locator('#node-config-input-padValue').inputValue(), '0', 'pad value shows its default');
    assert.equal(await marked(), 0, 'the new graph dialog marks a field wrong');
    await page.locator('.red-ui-tray').last().locator('#node-config-dialog-ok').click();
    await page.locator('#node-config-input-padValue').waitFor({ state: 'detached' });
    assert.equal(await marked(), 0, 'the new infer dialog marks a field wrong');
    await page.locator('.red-ui-tray').last().locator('#node-dialog-ok').click();
    await page.locator('.red-ui-tray').waitFor({ state: 'detached' });
    const types = await page.evaluate(() => {
      const seen: string[] = [];
      RED.nodes.eachNode((n) => seen.push(n.type));
      RED.nodes.eachConfig((n) => seen.push(n.type));
      return seen.sort();
    });
    assert.deepEqual(types, ['ncs2-device', 'ncs2-graph', 'ncs2-infer']);
    assert.deepEqual(await invalidNodes(page), []);
    await deployWithoutWarning(page);
  });

  it('made no request to another host', function () {
    assert.deepEqual(watched?.offHost, []);
  });
});
