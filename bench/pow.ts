/**
 * Proof-of-work hashing rates, in one run (~12 s): the reference solver (pure TypeScript, domain/pow.ts) next to
 * node:crypto (OpenSSL) hashing the same 40-byte messages challenge ‖ nonce one at a time, and the ratio.
 *
 *   npm run bench:pow
 *
 * Each figure is the median of three timed passes after a warm-up. Figures, not assertions: tests never time.
 */
import { Effect } from "effect"
import { createHash, hash as oneShotHash } from "node:crypto"
import { cpus } from "node:os"
import { bytesToHex, challenge, makePowSearcher, solveReference, type SolveInput } from "../src/domain/pow.ts"

const input: SolveInput = {
  chainId: 31337,
  registry: "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
  miner: "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
  roundId: 42n,
  chunkId: 7,
  gradientHash: "0x1b6a3443f30a8adc08c12490d5b12cbe9a8590f6c76b73a15cdb3ac880eb7cc4",
  cid: "QmSKtdHEsfahQnRsP5MkQ6xWG1Jah2xAzVAj2SkpcAgoSx",
  // Nothing in the measured ranges reaches 64 zero bits: every nonce is hashed.
  difficulty: 64
}
const c = challenge(input)

/** Hashes per second of `run(from, count)`, median of three passes after a warm-up pass. */
const measure = async (count: number, run: (from: number, count: number) => Promise<void> | void): Promise<number> => {
  await run(0, Math.ceil(count / 4))
  const rates: Array<number> = []
  for (let pass = 0; pass < 3; pass++) {
    const started = performance.now()
    await run((pass + 1) * count, count)
    rates.push(count / ((performance.now() - started) / 1000))
  }
  return rates.sort((a, b) => a - b)[1]!
}

const message = Buffer.alloc(40)
message.set(c)
const setNonce = (n: number): void => {
  message.writeUInt32BE(Math.floor(n / 2 ** 32), 32)
  message.writeUInt32BE(n >>> 0, 36)
}

const nodeCreateHash = (from: number, count: number): void => {
  for (let n = from; n < from + count; n++) {
    setNonce(n)
    createHash("sha256").update(message).digest()
  }
}

const nodeOneShot = (from: number, count: number): void => {
  for (let n = from; n < from + count; n++) {
    setNonce(n)
    oneShotHash("sha256", message, "buffer")
  }
}

const searcher = makePowSearcher(c)
const searcherOnly = (from: number, count: number): void => {
  searcher.search(BigInt(from), BigInt(from + count - 1), input.difficulty)
}

// The whole solver: batches of 4096 with a scheduler yield between them; the range runs out (ResourceError).
const referenceSolver = (from: number, count: number): Promise<void> =>
  Effect.runPromise(
    solveReference(input, { startNonce: BigInt(from), maxNonce: BigInt(from + count - 1) }).pipe(
      Effect.flip,
      Effect.flatMap((error) =>
        error._tag === "ResourceError" ? Effect.void : Effect.die(`unexpected ${error._tag}: ${error.message}`)
      )
    )
  )

// The specialised hash and OpenSSL must agree before their speeds mean anything.
for (const nonce of [0, 1, 4096, 2 ** 32 + 7]) {
  setNonce(nonce)
  const expected = createHash("sha256").update(message).digest("hex")
  if (bytesToHex(searcher.hash(BigInt(nonce))) !== `0x${expected}`) throw new Error(`pow hash mismatch at ${nonce}`)
}

const reference = await measure(4_000_000, referenceSolver)
const core = await measure(4_000_000, searcherOnly)
const node = await measure(600_000, nodeCreateHash)
const nodeHash = await measure(600_000, nodeOneShot)

const seconds = (difficulty: number) => {
  const s = 2 ** difficulty / reference
  return s < 1 ? `${(s * 1000).toFixed(0)} ms` : s < 120 ? `${s.toFixed(1)} s` : `${(s / 60).toFixed(0)} min`
}
const row = (label: string, value: string) => console.log(`  ${label.padEnd(54)}${value.padStart(12)}`)
const mhs = (rate: number) => `${(rate / 1e6).toFixed(2)} MH/s`

console.log(`PoW hashing, one thread — Node ${process.version}, ${cpus()[0]?.model ?? "unknown CPU"}`)
row("reference solver (solveReference: batches + yields)", mhs(reference))
row("reference hash loop alone (PowSearcher.search)", mhs(core))
row("node:crypto createHash('sha256'), one per message", mhs(node))
row("node:crypto hash('sha256') one-shot, one per message", mhs(nodeHash))
row("ratio reference / createHash", `${(reference / node).toFixed(2)}×`)
row("ratio reference / crypto.hash", `${(reference / nodeHash).toFixed(2)}×`)
console.log(
  `  expected solve time at the reference rate: ` +
    [16, 20, 24, 28, 32].map((d) => `d=${d} ${seconds(d)}`).join(", ")
)
