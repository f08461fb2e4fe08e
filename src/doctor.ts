// doctor.ts — what this installation can do: the addon that loaded, its GEMM backend, threads, CUDA build
// and GPUs with their FP8 support.
import os from 'node:os';
import { loadedAddonFile, native, type CudaInfo } from './native.js';

export interface DoctorReport {
  node: string;
  platform: string;
  cpus: number;
  addon: string | null;
  build: ReturnType<ReturnType<typeof native>['buildInfo']>;
  cuda: CudaInfo;
}

export function doctor(): DoctorReport {
  const addon = native();
  return {
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    cpus: os.cpus().length,
    addon: loadedAddonFile(),
    build: addon.buildInfo(),
    cuda: addon.cudaInfo(),
  };
}

export function formatDoctor(r: DoctorReport): string {
  const lines = [
    `node        ${r.node} (${r.platform}, ${r.cpus} CPUs)`,
    `addon       ${r.addon}`,
    `CPU GEMM    ${r.build.gemm} | OpenMP ${r.build.openmp ? 'yes' : 'no'} | ${r.build.threads} threads`,
    `CUDA build  ${r.cuda.built ? `yes (runtime ${r.cuda.runtimeVersion}, driver ${r.cuda.driverVersion || 'none'})` : 'no'}`,
  ];
  if (r.cuda.error) lines.push(`CUDA        ${r.cuda.error}`);
  for (const d of r.cuda.devices)
    lines.push(
      `GPU ${d.index}       ${d.name} | compute ${d.computeCapability} | ${(d.totalMemoryBytes / 2 ** 30).toFixed(1)} GiB | ` +
        `${d.multiprocessors} SMs | BF16 ${d.bf16 ? 'yes' : 'no'} | FP8 ${d.fp8 ? 'yes' : 'no (needs compute 8.9+)'}`,
    );
  if (r.cuda.built && r.cuda.devices.length === 0 && !r.cuda.error) lines.push('GPU         none found');
  if (r.cuda.built) lines.push(`cuBLASLt    ${r.cuda.cublasLt ?? `not loaded: ${r.cuda.cublasLtError}`}`);
  return lines.join('\n');
}
