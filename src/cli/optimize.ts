/** `ncs2 optimize`: the engine's optimizer (FP16, INT8 with calibration, folded preprocessing) on a file. */
import { InvalidArgumentError, Option, type Command } from 'commander';
import { optimizeModel, writeModelAtomic, formatReport } from '../engine';

function floats(flag: string) {
  return (v: string) => {
    const list = v.split(',').map(Number);
    if (list.some((n) => !Number.isFinite(n))) throw new Error(`${flag} expects comma-separated numbers, got '${v}'`);
    return list;
  };
}

function size(v: string): { width: number; height: number } {
  const m = /^(\d+)x(\d+)$/i.exec(v.trim());
  if (!m || Number(m[1]) < 1 || Number(m[2]) < 1) throw new InvalidArgumentError(`expected WIDTHxHEIGHT in pixels, e.g. 320x320; got '${v}'`);
  return { width: Number(m[1]), height: Number(m[2]) };
}

export function registerOptimize(program: Command): Command {
  program
    .command('optimize')
    .description('convert a model to FP16 or INT8 (calibrated), optionally folding preprocessing into it')
    .argument('<in>', 'the .onnx model to optimize')
    .requiredOption('-o, --output <out>', 'where to write the optimized model (written atomically)')
    .addOption(new Option('--precision <p>', 'target precision').choices(['fp16', 'int8']).default('fp16'))
    .option('--calibration <path>', 'INT8 calibration data: a folder of images or a .npy file')
    .addOption(new Option('--method <m>', 'activation range calibration (int8)').choices(['minmax', 'percentile', 'entropy']).default('minmax'))
    .option('--percentile <n>', 'percentile for --method percentile', Number)
    .option('--per-tensor', 'one weight scale per tensor instead of per output channel')
    .addOption(new Option('--weight-bits <b>', 'weight bits (7 avoids int8 overflow on x86 without VNNI)').choices(['7', '8']).default('7'))
    .addOption(new Option('--target <t>', 'device the model is for (ncs2 = FP16 only)').choices(['cpu', 'ncs2']).default('cpu'))
    .option('--fp16-io', 'FP16 inputs and outputs too (halves transfer bytes)')
    .option('--fold-preprocessing', 'take uint8 pixels and normalise inside the model')
    .option('--mean <a,b,c>', 'per-channel mean of the model\'s normalisation (folded preprocessing and calibration images)', floats('--mean'))
    .option('--std <a,b,c>', 'per-channel std of the model\'s normalisation (folded preprocessing and calibration images)', floats('--std'))
    .option('--scale <s>', 'pixel scale of the model\'s normalisation (default 1/255)', Number)
    .option('--bgr', 'the model expects BGR channel order')
    .addOption(new Option('--layout <l>', 'pixel layout the folded model takes').choices(['NHWC', 'NCHW']).default('NHWC'))
    .option('--calibration-size <WxH>', 'size the calibration images are resized to (needed for models with a dynamic height or width)', size)
    .addOption(new Option('--calibration-resize <mode>', 'how calibration images fit that size').choices(['stretch', 'letterbox', 'center-crop', 'top-left']))
    .option('--json', 'print the full report as JSON')
    .action(async (input: string, o: { output: string; precision: 'fp16' | 'int8'; calibration?: string; method: 'minmax' | 'percentile' | 'entropy'; percentile?: number; perTensor?: boolean; weightBits: string; target: 'cpu' | 'ncs2'; fp16Io?: boolean; foldPreprocessing?: boolean; mean?: number[]; std?: number[]; scale?: number; bgr?: boolean; layout: 'NHWC' | 'NCHW'; calibrationSize?: { width: number; height: number }; calibrationResize?: 'stretch' | 'letterbox' | 'center-crop' | 'top-left'; json?: boolean }) => {
      // INT8-only settings go to the optimizer only for INT8: it refuses them otherwise, rightly
      const int8 = o.precision === 'int8' ? { calibration: o.calibration, method: o.method, percentile: o.percentile, perChannel: !o.perTensor, weightBits: Number(o.weightBits) as 7 | 8 } : {};
      const { bytes, report } = await optimizeModel(input, {
        precision: o.precision,
        ...int8,
        target: o.target,
        fp16Io: o.fp16Io,
        foldPreprocessing: o.foldPreprocessing ? { mean: o.mean, std: o.std, scale: o.scale, channelOrder: o.bgr ? 'BGR' : 'RGB', layout: o.layout } : undefined,
        // Calibration images are normalised as the model expects its input, folded or not.
        calibrationImage:
          o.precision === 'int8'
            ? JSON.parse(JSON.stringify({ ...o.calibrationSize, resize: o.calibrationResize, mean: o.mean, std: o.std, scale: o.scale, channelOrder: o.bgr ? 'BGR' : undefined }))
            : undefined,
      });
      await writeModelAtomic(o.output, bytes);
      process.stdout.write((o.json ? JSON.stringify(report, null, 2) : formatReport(report)) + '\n');
    });
  return program;
}
