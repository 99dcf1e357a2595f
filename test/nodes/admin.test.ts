import { strict as assert } from 'assert';
import type { AdminHandler, AdminRequest, AdminResponse, NodeAPI } from '../../nodes/lib/red';
import { NCS2_NODES, buildFlow, graphLease, helper, useNodeRedServer } from './support';
import { EDITOR_SCRIPT_ROUTE } from '../../nodes/lib/editor-script';

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
      assert.match((missing.body as ModelInfoBody).error!, /cannot read \/no\/such\/model.onnx as an ONNX model: no such file/);
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
