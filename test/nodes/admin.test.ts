import { strict as assert } from 'assert';
import * as path from 'path';
import type { AdminHandler, AdminRequest, AdminResponse, NodeAPI } from '../../nodes/lib/red';
import { RedProcess } from '../e2e/harness';
import { hostileUserDir } from './hostile-files';
import { EDITOR_SCRIPT_ROUTE } from '../../nodes/lib/editor-script';
import { NCS2_NODES, buildFlow, collect, graphLease, helper, node, statuses, useNodeRedServer, waitFor } from './support';

/** The refusal with the requested path taken out: it must read the same for every probe. */
function refusalShape(body: unknown, requested: string): string {
  return JSON.stringify(body).split(JSON.stringify(JSON.stringify(requested)).slice(1, -1)).join('<model>');
}

interface DevicesBody {
  kinds: Array<{ kind: string; available: boolean; cores: number }>;
  devices: Array<{ id: string; kind: string; name: string; simulated: boolean; parallelism: number }>;
}

interface ModelInfoBody {
  path: string;
  inputs: Array<{ name: string; type: string; dims: Array<number | string> }>;
  outputs: Array<{ name: string; type: string; dims: Array<number | string> }>;
  image: { width: number; height: number; channels: number; layout: string } | { error: string };
  error?: string;
}

interface GraphBody {
  state: string;
  device?: string;
  inputs?: ModelInfoBody['inputs'];
  image?: ModelInfoBody['image'];
  error?: string;
}

describe('ncs2 admin endpoints', function () {
  this.timeout(30000);

  describe('through the test helper', function () {
    useNodeRedServer();

    it('GET /ncs2/devices lists the kinds this host offers and the open devices', async function () {
      await helper.load(NCS2_NODES, buildFlow());
      await graphLease().whenLoaded();
      const res = await helper.request().get('/ncs2/devices');
      assert.equal(res.status, 200);
      const body = res.body as DevicesBody;
      assert.equal(body.kinds[0].kind, 'cpu');
      assert.ok(body.kinds[0].cores >= 1);
      assert.deepEqual(body.devices.map((d) => [d.id, d.kind, d.simulated, d.parallelism]), [['cpu-dev', 'cpu', false, 1]]);
    });

    it('GET /ncs2/model-info reads a model signature (default, relative path) and says when the file is missing', async function () {
      await helper.load(NCS2_NODES, buildFlow());
      const byDefault = await helper.request().get('/ncs2/model-info');
      assert.equal(byDefault.status, 200);
      const body = byDefault.body as ModelInfoBody;
      assert.match(body.path, /models\/mnist\/mnist-cnn\.onnx$/);
      assert.deepEqual(body.inputs, [{ name: 'image', type: 'float32', dims: ['N', 1, 28, 28] }]);
      assert.deepEqual(body.outputs, [{ name: 'logits', type: 'float32', dims: ['N', 10] }]);
      assert.deepEqual(body.image && 'width' in body.image ? [body.image.width, body.image.height, body.image.channels, body.image.layout] : body.image, [28, 28, 1, 'NCHW']);

      const relative = await helper.request().get('/ncs2/model-info?model=models%2Fmnist%2Fmnist-cnn.onnx');
      assert.equal(relative.status, 200);
      assert.equal((relative.body as ModelInfoBody).path, body.path);

      const missing = await helper.request().get('/ncs2/model-info?model=%2Fno%2Fsuch%2Fmodel.onnx');
      assert.equal(missing.status, 404);
      assert.equal((missing.body as ModelInfoBody).error, `no ONNX model "/no/such/model.onnx" that the editor may read: give a .onnx file in the Node-RED user directory, the package's models or a folder listed in ncs2.allowedModelRoots (settings.js)`);
    });

    it('GET /ncs2/model-info answers every hostile path like a missing file: same status and body, no size, at once', async function () {
      const f = hostileUserDir();
      try {
        // The helper's settings allow the temporary folder; these point the user directory at the fixture instead.
        helper.settings({ userDir: f.userDir });
        await helper.load(NCS2_NODES, buildFlow());
        const shapes = new Set<string>();
        for (const probe of f.probes) {
          const start = Date.now();
          const res = await helper.request().get(`/ncs2/model-info?model=${encodeURIComponent(probe)}`);
          assert.ok(Date.now() - start < 2000, `${probe}: ${Date.now() - start} ms`);
          assert.equal(res.status, 404, probe);
          assert.ok(!JSON.stringify(res.body).includes(String(f.modelSize)), `${probe}: the body gives a size`);
          shapes.add(refusalShape(res.body, probe));
        }
        assert.deepEqual([...shapes], [refusalShape({ error: `no ONNX model "X" that the editor may read: give a .onnx file in the Node-RED user directory, the package's models or a folder listed in ncs2.allowedModelRoots (settings.js)` }, 'X')]);
        const mine = await helper.request().get('/ncs2/model-info?model=mine.onnx');
        assert.equal(mine.status, 200);
        assert.deepEqual((mine.body as ModelInfoBody).inputs.map((i) => i.name), ['input']);
      } finally {
        helper.settings({});
        f.cleanup();
      }
    });

    it('GET /ncs2/graphs/:id reports a deployed graph, and 404 for an unknown id', async function () {
      await helper.load(NCS2_NODES, buildFlow());
      await graphLease().whenLoaded();
      const res = await helper.request().get('/ncs2/graphs/graph');
      assert.equal(res.status, 200);
      const body = res.body as GraphBody;
      assert.equal(body.state, 'ready');
      assert.equal(body.device, 'cpu-dev');
      assert.deepEqual(body.inputs, [{ name: 'image', type: 'float32', dims: ['N', 1, 28, 28] }]);
      const unknown = await helper.request().get('/ncs2/graphs/nope');
      assert.equal(unknown.status, 404);
      assert.match((unknown.body as GraphBody).error!, /no deployed ncs2-graph with id nope/);
    });
  });

  describe('flow paths at deploy', function () {
    // The fixture's user directory, and no extra roots: its neighbour folder is outside, as a stranger's folder would be.
    const settings: { userDir?: string } = {};
    useNodeRedServer(settings);
    let f: ReturnType<typeof hostileUserDir>;
    before(function () {
      f = hostileUserDir();
      settings.userDir = f.userDir;
    });
    after(function () {
      f.cleanup();
    });

    it('a graph whose model leads out of the allowed folders fails on deploy, naming the setting, on status and through Catch', async function () {
      await helper.load(NCS2_NODES, buildFlow({ observers: true, graph: { model: path.join(f.userDir, 'link-out.onnx'), preset: 'raw' } }));
      const caught = collect('caught') as Array<{ error: { message: string } }>;
      const seen = statuses('infer');
      node('infer').receive({ payload: { data: new Float32Array(4), dims: [1, 4] } });
      await waitFor(() => caught.length === 1, 'the error');
      assert.match(caught[0].error.message, /graph config graph is invalid: model .*link-out\.onnx \(it leads to .*secret\.onnx: links are followed\) is outside the folders this node set reads .*add its folder to ncs2\.allowedModelRoots in settings\.js to allow it/);
      await waitFor(() => seen.some((s) => s.fill === 'red'), 'a red status');
    });

    it('a named pipe as labels file is refused on deploy instead of blocking the load', async function () {
      await helper.load(NCS2_NODES, buildFlow({ observers: true, graph: { labels: path.join(f.userDir, 'pipe.onnx') } }));
      const caught = collect('caught') as Array<{ error: { message: string } }>;
      node('infer').receive({ payload: { data: new Float32Array(784), dims: [1, 1, 28, 28] } });
      await waitFor(() => caught.length === 1, 'the error');
      assert.match(caught[0].error.message, /graph config graph is invalid: labels file .*pipe\.onnx is not a regular file \(a folder, device or pipe cannot be read as one\)/);
    });
  });

  describe('in a real Node-RED with adminAuth: anonymous, read-only and full users', function () {
    this.timeout(120000);
    // bcrypt of the test-only password "ncs2-test-only" (cost 8), as settings.js stores it.
    const HASH = '$2b$08$2j4rHeMCN7LpDpDkDeejb.PHIae87aycr5JfChzpkhCFND/.5l4G2';
    let red: RedProcess;
    let f: ReturnType<typeof hostileUserDir>;
    const tokens: Record<string, string | undefined> = {};

    before(async function () {
      f = hostileUserDir();
      red = await RedProcess.start({
        settings: {
          userDir: f.userDir,
          adminAuth: {
            type: 'credentials',
            users: [
              { username: 'admin', password: HASH, permissions: '*' },
              { username: 'reader', password: HASH, permissions: 'read' },
            ],
          },
        },
      });
      tokens.anonymous = undefined;
      for (const [user, scope] of [['admin', '*'], ['reader', 'read']]) {
        const res = await red.request('POST', '/auth/token', { client_id: 'node-red-admin', grant_type: 'password', scope, username: user, password: 'ncs2-test-only' });
        assert.equal(res.status, 200, JSON.stringify(res.body));
        tokens[user === 'admin' ? 'full' : 'read-only'] = (res.body as { access_token: string }).access_token;
      }
    });
    after(async function () {
      await red?.stop();
      f?.cleanup();
    });

    /** GET with a bound on the wait: a read of /dev/zero or a pipe must not hold the answer. */
    async function get(urlPath: string, token: string | undefined): Promise<{ status: number; text: string; ms: number }> {
      const start = Date.now();
      const res = await fetch(`${red.url}${urlPath}`, { headers: token ? { authorization: `Bearer ${token}` } : {}, signal: AbortSignal.timeout(5000) });
      return { status: res.status, text: await res.text(), ms: Date.now() - start };
    }

    it('anonymous callers get 401 from every endpoint, before any file is touched', async function () {
      for (const url of ['/ncs2/devices', '/ncs2/graphs/x', '/ncs2/model-info', ...f.probes.map((p) => `/ncs2/model-info?model=${encodeURIComponent(p)}`)]) {
        const res = await get(url, undefined);
        assert.equal(res.status, 401, url);
      }
    });

    for (const user of ['read-only', 'full']) {
      it(`${user}: every probe answers 404 with the same body, no size, within 2 s; the user's own model reads`, async function () {
        const shapes = new Set<string>();
        for (const probe of f.probes) {
          const res = await get(`/ncs2/model-info?model=${encodeURIComponent(probe)}`, tokens[user]);
          assert.equal(res.status, 404, `${probe}: ${res.text}`);
          assert.ok(res.ms < 2000, `${probe}: ${res.ms} ms`);
          assert.ok(!res.text.includes(String(f.modelSize)), `${probe}: the body gives a size`);
          shapes.add(refusalShape(JSON.parse(res.text), probe));
        }
        assert.equal(shapes.size, 1, [...shapes].join('\n'));
        const mine = await get('/ncs2/model-info?model=mine.onnx', tokens[user]);
        assert.equal(mine.status, 200, mine.text);
        assert.deepEqual((JSON.parse(mine.text) as ModelInfoBody).outputs.map((o) => o.name), ['output']);
        const graph = await get(`/ncs2/graphs/${encodeURIComponent('../../etc/passwd')}`, tokens[user]);
        assert.equal(graph.status, 404);
      });
    }

    it('memory stays flat while a read-only user asks for /dev/zero, /dev/urandom and the pipe again and again', async function () {
      const before = await red.stats();
      const token = tokens['read-only'];
      for (let round = 0; round < 20; round++) {
        await Promise.all(['/dev/zero', '/dev/urandom', path.join(f.userDir, 'zero.onnx'), path.join(f.userDir, 'pipe.onnx')].map((p) => get(`/ncs2/model-info?model=${encodeURIComponent(p)}`, token)));
      }
      const after = await red.stats();
      const grownMb = (after.rss - before.rss) / 1024 ** 2;
      assert.ok(grownMb < 32, `RSS grew ${grownMb.toFixed(1)} MB over 80 requests (${(before.rss / 1024 ** 2).toFixed(0)} -> ${(after.rss / 1024 ** 2).toFixed(0)} MB)`);
    });
  });

  describe('permissions', function () {
    /** A stand-in RED that records routes and refuses every permission, as an editor user without rights would be. */
    function recordingRed() {
      const routes: Array<{ path: string; handlers: AdminHandler[] }> = [];
      const asked: string[] = [];
      const red = {
        nodes: { createNode: () => undefined, registerType: () => undefined, getNode: () => null },
        httpAdmin: { get: (path: string, ...handlers: AdminHandler[]) => routes.push({ path, handlers }) },
        auth: {
          needsPermission: (permission: string): AdminHandler => {
            asked.push(permission);
            return (_req, res) => res.status(401).json({ denied: permission });
          },
        },
        settings: {},
        log: { warn: () => undefined, info: () => undefined, debug: () => undefined },
        _: (key: string) => key,
      } as unknown as NodeAPI;
      return { red, routes, asked };
    }

    it('every endpoint checks a read permission before its handler runs', function () {
      const { red, routes, asked } = recordingRed();
      for (const register of NCS2_NODES) register(red);
      // The one public route: the editor's field rules, loaded by a <script> element (which sends no token), registered once.
      const open = routes.filter((r) => r.path === EDITOR_SCRIPT_ROUTE);
      assert.deepEqual(open.map((r) => r.handlers.length), [1]);
      routes.splice(routes.indexOf(open[0]), 1);
      assert.deepEqual(routes.map((r) => r.path).sort(), ['/ncs2/devices', '/ncs2/graphs/:id', '/ncs2/model-info']);
      assert.deepEqual([...new Set(asked)].sort(), ['ncs2-device.read', 'ncs2-graph.read']);
      for (const route of routes) {
        assert.equal(route.handlers.length, 2, `${route.path}: permission check, then handler`);
        let status = 0;
        let handlerRan = false;
        const res: AdminResponse = {
          status(code: number) {
            status = code;
            return res;
          },
          json: () => undefined,
        };
        const req: AdminRequest = { params: { id: 'x' }, query: {} };
        route.handlers[0](req, res, () => {
          handlerRan = true;
        });
        assert.equal(status, 401, route.path);
        assert.equal(handlerRan, false, route.path);
      }
    });
  });
});
