import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { buildMlp } from '../../src/engine/graph/builder';

/**
 * A Node-RED user directory holding one model (and a link to it), and beside it a folder that is
 * not allowed, with another model and a labels file. In the user directory: links out of it (to
 * that model, /dev/zero, /etc/shadow), a named pipe and a folder named like a model. `probes` are
 * the paths an attacker would try, `..` escapes included; none may be read.
 */
export function hostileUserDir() {
  const base = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'ncs2-hostile-')));
  const userDir = path.join(base, 'user');
  const outside = path.join(base, 'outside');
  fs.mkdirSync(userDir);
  fs.mkdirSync(outside);
  const model = buildMlp({ inputSize: 4, hidden: [4], outputSize: 2, seed: 3 });
  fs.writeFileSync(path.join(userDir, 'mine.onnx'), model);
  fs.writeFileSync(path.join(outside, 'secret.onnx'), model);
  fs.writeFileSync(path.join(outside, 'labels.txt'), 'a\nb\n');
  fs.symlinkSync(path.join(userDir, 'mine.onnx'), path.join(userDir, 'link-in.onnx'));
  fs.symlinkSync(path.join(outside, 'secret.onnx'), path.join(userDir, 'link-out.onnx'));
  fs.symlinkSync('/dev/zero', path.join(userDir, 'zero.onnx'));
  fs.symlinkSync('/etc/shadow', path.join(userDir, 'shadow.onnx'));
  execFileSync('mkfifo', [path.join(userDir, 'pipe.onnx')]);
  fs.mkdirSync(path.join(userDir, 'folder.onnx'));
  const probes = [
    '/dev/zero',
    '/dev/urandom',
    '/etc/shadow',
    '/etc/passwd',
    path.join(outside, 'secret.onnx'),
    path.join(userDir, 'link-out.onnx'),
    path.join(userDir, 'zero.onnx'),
    path.join(userDir, 'shadow.onnx'),
    path.join(userDir, 'pipe.onnx'),
    path.join(userDir, 'folder.onnx'),
    '../outside/secret.onnx',
    'models/../../../../../../etc/passwd',
    `${userDir}/../outside/secret.onnx`,
    '/no/such/model.onnx',
    path.join(userDir, 'missing.onnx'),
  ];
  return { base, userDir, outside, modelSize: model.length, probes, cleanup: () => fs.rmSync(base, { recursive: true, force: true }) };
}
