/**
 * What honest recomputations differ by across determinism profiles (DESIGN.md "Verification"), measured by
 * `npm run bench:tolerance` (bench/verifyTolerance.ts) on 2026-12-01: onnxruntime-node 1.30.0, CPU provider, isa
 * avx512, linux-x64 (2 × AMD EPYC); 32 chunks of each of five specs (the default mlp and bitnet-lora specs, mlp with
 * 100 steps, mlp 784-256-10 and bitnet-lora 784-256-10 r8 at batch 128) trained under 1 and 2 intra-op threads and
 * every graph optimisation level, each compared with 1 thread / "disabled".
 *
 * Per tensor relative L2 distance ‖a − b‖ / ‖b‖:
 * - mlp, every profile: ≤ 5.1e-7 (fusing levels and 2 threads alike; 0 for the 256-wide model with 2 threads);
 * - bitnet-lora, optimisation levels: 0 (nothing fuses); 256-wide with 2 threads: 0;
 * - bitnet-lora 784-64-10 r4 with 2 threads: ≤ 1.4e-5 on 30 of 32 chunks, but 1.42e-2 (fc1.lora_b) and 8.5e-3 on
 *   chunks 18 and 28. Those are ReLU ties: at step 0 LoRA B is 0, so a hidden pre-activation is s · Σ ±x_i over
 *   ternary weights, which can be a rounding error away from 0; another summation order flips the unit on or off
 *   and the whole fc1 gradient with it. The maximum is this tie, not accumulated rounding.
 * Losses: |Δloss_before|, |Δloss_after| ≤ 4.05e-6.
 *
 * Dishonest results (src/testing/Cheaters.ts) measured the same way, the closest over chunks: fewer_steps 2.67e-2
 * (mlp, 100 steps; 1.8e-1 to 2e-1 at 10 steps), other_chunk ≥ 2.4e-1, stale_model ≥ 1.4, scaled 2, random ≥ 2.7.
 * So ×10 the maximum (1.42e-1) would accept fewer_steps on long rounds: a verifier should recompute with the
 * submission's own settable profile fields (threads, graph_optimization), which removes the thread-order ties, and
 * keep the tolerance for what it cannot reproduce (execution provider, CPU kernel class, platform).
 *
 * CPU ↔ WebGPU, measured the same way on 2026-12-02 (same machine, same 32 chunks of the same five specs; the WebGPU
 * provider of onnxruntime-node 1.30.0 running the graphs' WebGPU flavour, Dawn over Vulkan on SwiftShader from
 * Debian's chromium 156, 1 thread, "disabled"), compared with the CPU reference:
 * - mlp: ≤ 6.2e-7 (default), ≤ 7.0e-7 (100 steps), ≤ 4.8e-7 (784-256-10) but for one tie, chunk 24 of
 *   784-256-10: 1.45e-4 (fc1.bias);
 * - bitnet-lora 784-64-10 r4: ≤ 1.62e-5 on 30 of 32 chunks; chunks 18 and 28 are the ties of 2 threads above, at
 *   the same distances (1.42e-2 and 8.54e-3, fc1.lora_b): WebGPU falls on the 2-thread side of them. A float64
 *   recomputation falls on the 1-thread side for chunk 18 and on the other for chunk 28: neither side is wrong;
 * - bitnet-lora 784-256-10 r8, batch 128: ties on 24 of 32 chunks, 2.16e-4 … 1.92e-3 (fc1.lora_b: one flipped unit
 *   of 256 moves about 1/256 of it, of 64 about 1/64), the other 8 ≤ 9.3e-6, where every CPU profile of this model
 *   gives the reference's bytes.
 * Losses: ≤ 3.81e-6. WebGPU ↔ WebGPU (two trainers, two processes): bit-identical.
 * A verifier recomputes on the submitter's provider when its machine has it (WebGPU then gave the same bytes here,
 * on the same driver); one without it compares across providers, and on those tie chunks, at the default tolerance,
 * rejects an honest WebGPU miner (2, 1 and 24 chunks of 32 in these rounds). Two different GPUs or drivers under one
 * "webgpu" profile were not measured.
 */

/** The largest per-tensor relative L2 distance between honest profiles measured here (a ReLU tie, see above). */
export const measuredHonestDistance = 1.42e-2

/** The largest one without ReLU ties (bitnet-lora fc2.lora_a, 2 threads; every mlp difference is below 5.1e-7). */
export const measuredHonestDistanceWithoutTies = 1.4e-5

/** The largest absolute loss difference between honest profiles measured here. */
export const measuredHonestLossDifference = 4.05e-6

/** The closest a cheater came to the honest tensors (fewer_steps, mlp with 100 steps): a tolerance must stay below. */
export const closestDishonestDistance = 2.67e-2

/**
 * The largest per-tensor relative L2 distance measured between the WebGPU provider and the CPU reference (see above:
 * onnxruntime-node 1.30.0, SwiftShader, 1 thread, optimisations disabled, 32 chunks of five specs): a ReLU tie,
 * bitnet-lora 784-64-10 r4 chunk 18, fc1.lora_b.
 */
export const measuredCpuWebgpuDistance = 1.42e-2

/** The largest one on chunks without a ReLU tie (bitnet-lora 784-64-10 r4 chunk 25, fc2.lora_a; every mlp one ≤ 7.0e-7). */
export const measuredCpuWebgpuDistanceWithoutTies = 1.62e-5
