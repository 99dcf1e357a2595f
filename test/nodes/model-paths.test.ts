import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { ConfigError } from '../../src/engine/errors';
import { DEFAULT_LABELS, DEFAULT_MODEL, MODELS_DIR, resolveConfigPath } from '../../nodes/lib/paths';
import { DEFAULT_MAX_MODEL_BYTES, EditorReadsBusyError, UnreadableFileError, checkFlowPath, checkGraphPaths, filePolicy, readModelForEditor, type FilePolicy } from '../../nodes/lib/model-paths';
import { parseGraphSettings } from '../../nodes/lib/settings';
import { hostileUserDir } from './hostile-files';

describe('model paths: what graph configs and the editor may read', function () {
  let f: ReturnType<typeof hostileUserDir>;
  let policy: FilePolicy;
  beforeEach(function () {
    f = hostileUserDir();
    policy = filePolicy({ userDir: f.userDir });
  });
  afterEach(function () {
    f.cleanup();
  });

  describe('filePolicy', function () {
    it('allows the user directory, the package models and the OCR model package, each by its real path', function () {
      assert.equal(policy.roots[0], f.userDir);
      assert.ok(policy.roots.includes(fs.realpathSync(MODELS_DIR)));
      assert.ok(policy.roots.some((r) => r.endsWith(path.join('@gutenye', 'ocr-models'))), policy.roots.join(', '));
      assert.ok(!policy.roots.includes(f.outside));
      assert.equal(policy.maxModelBytes, DEFAULT_MAX_MODEL_BYTES);
    });

    it('adds ncs2.allowedModelRoots and ncs2.maxModelBytes from settings.js, and refuses malformed ones naming the key', function () {
      const more = filePolicy({ userDir: f.userDir, ncs2: { allowedModelRoots: [f.outside], maxModelBytes: 1000 } });
      assert.ok(more.roots.includes(f.outside));
      assert.equal(more.maxModelBytes, 1000);
      assert.throws(() => filePolicy({ ncs2: { allowedModelRoots: 'models' } }), (e: Error) => e instanceof ConfigError && /ncs2.allowedModelRoots must be a list of absolute folder paths, got "models"/.test(e.message));
      assert.throws(() => filePolicy({ ncs2: { allowedModelRoots: ['relative/dir'] } }), /ncs2.allowedModelRoots must be a list of absolute folder paths/);
      assert.throws(() => filePolicy({ ncs2: { maxModelBytes: 3 * 1024 ** 3 } }), /ncs2.maxModelBytes must be a whole number of bytes from 1 to 2147483648 \(2 GiB, the ONNX file limit\), got 3221225472/);
      assert.throws(() => filePolicy({ ncs2: 'yes' }), /ncs2 must be an object/);
    });

    it('without a user directory, only the package models (and configured roots) are allowed', function () {
      const bare = filePolicy({});
      assert.ok(!bare.roots.includes(f.userDir));
      assert.ok(bare.roots.includes(fs.realpathSync(MODELS_DIR)));
    });
  });

  describe('checkFlowPath (deploy time)', function () {
    it('accepts files inside the roots, links that stay inside, the bundled models, and missing files (loading reports those)', function () {
      checkFlowPath(path.join(f.userDir, 'mine.onnx'), 'model', policy);
      checkFlowPath(path.join(f.userDir, 'link-in.onnx'), 'model', policy);
      checkFlowPath(DEFAULT_MODEL, 'model', policy);
      checkFlowPath(DEFAULT_LABELS, 'labels file', policy);
      checkFlowPath(path.join(f.userDir, 'not-there.onnx'), 'model', policy);
      checkFlowPath(path.join(MODELS_DIR, 'mnist', 'samples'), 'calibration data', policy);
    });

    it('refuses a file outside the roots, a link leading out, and a .. escape, naming the setting that allows more', function () {
      const refuse = (file: string, pattern: RegExp) => assert.throws(() => checkFlowPath(file, 'model', policy), (e: Error) => e instanceof ConfigError && pattern.test(e.message), file);
      refuse(path.join(f.outside, 'secret.onnx'), /^model .*secret\.onnx is outside the folders this node set reads .*; add its folder to ncs2.allowedModelRoots in settings.js to allow it$/);
      refuse(path.join(f.userDir, 'link-out.onnx'), /link-out\.onnx \(it leads to .*outside[\\/]secret\.onnx: links are followed\) is outside/);
      refuse(path.join(f.userDir, '..', 'outside', 'secret.onnx'), /is outside the folders/);
      refuse('/etc/passwd', /model \/etc\/passwd is outside the folders/);
      // Allowed once the folder is configured.
      checkFlowPath(path.join(f.outside, 'secret.onnx'), 'model', filePolicy({ userDir: f.userDir, ncs2: { allowedModelRoots: [f.outside] } }));
    });

    it('refuses a device, a pipe and a folder as a model or labels file, and a file over its cap', function () {
      assert.throws(() => checkFlowPath(path.join(f.userDir, 'pipe.onnx'), 'model', policy), /model .*pipe\.onnx is not a regular file \(a folder, device or pipe cannot be read as one\)/);
      assert.throws(() => checkFlowPath(path.join(f.userDir, 'folder.onnx'), 'labels file', policy), /labels file .*folder\.onnx is not a regular file/);
      const withDev = filePolicy({ userDir: f.userDir, ncs2: { allowedModelRoots: ['/dev'] } });
      assert.throws(() => checkFlowPath(path.join(f.userDir, 'zero.onnx'), 'model', withDev), /zero\.onnx is not a regular file/);
      const small = filePolicy({ userDir: f.userDir, ncs2: { maxModelBytes: 100 } });
      const size = fs.statSync(path.join(f.userDir, 'mine.onnx')).size;
      assert.throws(() => checkFlowPath(path.join(f.userDir, 'mine.onnx'), 'model', small), new RegExp(`mine\\.onnx is ${size} bytes, over the limit of 100; raise ncs2.maxModelBytes in settings.js to allow it`));
    });

    it('checkGraphPaths checks the model, labels, character list and calibration data of parsed graph settings', function () {
      const settings = (def: Record<string, unknown>) => parseGraphSettings(def, f.userDir);
      checkGraphPaths(settings({ model: 'mine.onnx' }), policy);
      checkGraphPaths(settings({ model: '' }), policy);
      assert.throws(() => checkGraphPaths(settings({ model: 'link-out.onnx' }), policy), /^ConfigError: model .*link-out\.onnx/);
      assert.throws(() => checkGraphPaths(settings({ model: 'mine.onnx', labels: path.join(f.outside, 'labels.txt') }), policy), /labels file .*labels\.txt is outside/);
      assert.throws(() => checkGraphPaths(settings({ model: 'mine.onnx', preset: 'text-recognition', charset: path.join(f.outside, 'labels.txt') }), policy), /character list .*labels\.txt is outside/);
      assert.throws(() => checkGraphPaths(settings({ model: 'mine.onnx', optimize: 'int8', calibration: f.outside }), policy), /calibration data .*outside is outside/);
    });
  });

  describe('readModelForEditor (the model-info endpoint)', function () {
    /** The reason a read failed, and how long it took. */
    async function refusal(file: string, p = policy): Promise<{ error: unknown; ms: number }> {
      const start = Date.now();
      try {
        await readModelForEditor(file, p, 2000);
      } catch (error) {
        return { error, ms: Date.now() - start };
      }
      throw new Error(`${file} was read`);
    }

    it('reads an allowed .onnx model, through a link that stays inside too', async function () {
      const { bytes } = await readModelForEditor(path.join(f.userDir, 'link-in.onnx'), policy);
      assert.deepEqual(bytes, fs.readFileSync(path.join(f.userDir, 'mine.onnx')));
      const bundled = await readModelForEditor(resolveConfigPath('models/mnist/mnist-cnn.onnx', f.userDir), policy);
      assert.equal(bundled.bytes.length, fs.statSync(DEFAULT_MODEL).size);
    });

    it('refuses missing, outside, linked-out, .. , device, pipe, folder, oversized and non-.onnx files alike and at once', async function () {
      const withDev = filePolicy({ userDir: f.userDir, ncs2: { allowedModelRoots: ['/dev'] } });
      const small = filePolicy({ userDir: f.userDir, ncs2: { maxModelBytes: 100 } });
      const cases: Array<[string, FilePolicy]> = [
        [path.join(f.userDir, 'missing.onnx'), policy],
        [path.join(f.outside, 'secret.onnx'), policy],
        [path.join(f.userDir, 'link-out.onnx'), policy],
        [`${f.userDir}/../outside/secret.onnx`, policy],
        ['/dev/zero', withDev],
        [path.join(f.userDir, 'zero.onnx'), withDev],
        [path.join(f.userDir, 'pipe.onnx'), policy],
        [path.join(f.userDir, 'folder.onnx'), policy],
        [path.join(f.userDir, 'mine.onnx'), small],
        ['/etc/shadow', policy],
        [DEFAULT_LABELS, policy],
        [`${path.join(f.userDir, 'mine.onnx')}\0.txt`, policy],
      ];
      for (const [file, p] of cases) {
        const { error, ms } = await refusal(file, p);
        assert.ok(error instanceof UnreadableFileError, `${file}: ${String(error)}`);
        assert.equal((error as Error).message, 'no such model, or not one the editor may read', file);
        assert.ok(ms < 1000, `${file} took ${ms} ms`);
      }
    });

    it('gives up on a read that outlasts its timeout, with the same answer', async function () {
      // A sparse 64 MiB model: no disk space, but reading it takes far longer than 1 ms.
      const big = path.join(f.userDir, 'big.onnx');
      fs.closeSync(fs.openSync(big, 'w'));
      fs.truncateSync(big, 64 * 1024 ** 2);
      const start = Date.now();
      await assert.rejects(readModelForEditor(big, policy, 1), UnreadableFileError);
      assert.ok(Date.now() - start < 1000, `${Date.now() - start} ms`);
      // With time enough the same file reads (so the refusal above was the timeout).
      assert.equal((await readModelForEditor(big, policy)).bytes.length, 64 * 1024 ** 2);
    });

    it('serves reads one at a time and says it is busy to a flood beyond 8 waiting', async function () {
      const file = path.join(f.userDir, 'mine.onnx');
      const results = await Promise.allSettled(Array.from({ length: 20 }, () => readModelForEditor(file, policy)));
      const read = results.filter((r) => r.status === 'fulfilled').length;
      const refused = results.filter((r) => r.status === 'rejected' && r.reason instanceof EditorReadsBusyError && /try again in a moment/.test(String(r.reason))).length;
      assert.equal(read + refused, 20);
      assert.equal(read, 8);
      // The queue empties: a later request is served.
      await readModelForEditor(file, policy);
    });
  });
});
