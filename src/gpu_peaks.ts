// gpu_peaks.ts — dense BF16 tensor-core peaks (FLOP/s, no sparsity) for MFU, from NVIDIA's datasheets.
// MFU in ko-train is always against the BF16 peak, FP8 runs included, so BF16 and FP8 runs compare directly.
// KO_TRAIN_PEAK_TFLOPS overrides (for GPUs not listed, or clocks that differ).
const PEAKS_TFLOPS: Array<[RegExp, number]> = [
  [/H200/i, 989],
  [/H100.*(PCIe)/i, 756],
  [/H100.*NVL/i, 835],
  [/H100|GH200/i, 989],
  [/B200/i, 2250],
  [/A100/i, 312],
  [/A10G/i, 70],
  [/\bA10\b/i, 125],
  [/L40S/i, 362],
  [/L40/i, 181],
  [/\bL4\b/i, 121],
  [/RTX 4090/i, 165],
  [/RTX 4080/i, 97],
  [/RTX 4070/i, 58],
  [/RTX 4060/i, 30],
  [/RTX 3090/i, 71],
  [/RTX 6000 Ada/i, 364],
];

export function peakBf16Flops(deviceName: string): number | null {
  const env = Number(process.env.KO_TRAIN_PEAK_TFLOPS);
  if (Number.isFinite(env) && env > 0) return env * 1e12;
  for (const [re, tf] of PEAKS_TFLOPS) if (re.test(deviceName)) return tf * 1e12;
  return null;
}
