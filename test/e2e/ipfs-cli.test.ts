import { createHash } from "node:crypto"
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { encodeEnvelope, type EnvelopeHeader, FORMAT, float32Bytes } from "../../src/domain/gradientEnvelope.ts"
import { golden, multiChunk } from "../support/storeContract.ts"
import { cli as runCli } from "../support/cli.ts"

const work = mkdtempSync(join(tmpdir(), "r3mes-ipfs-cli-"))
afterAll(() => rmSync(work, { recursive: true, force: true }))


const cli = (args: ReadonlyArray<string>, cwd = work) => runCli(args, { cwd, timeoutMs: 30_000 })

const file = (name: string, bytes: Uint8Array | string): string => {
  const path = join(work, name)
  writeFileSync(path, bytes)
  return path
}

const header: EnvelopeHeader = {
  format: FORMAT,
  round_id: "12",
  chunk_id: 5,
  miner: "0x70997970c51812dc3a010c7d01b50e0d17dc79c8",
  model_hash: "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o",
  encoding: "pseudo-gradient",
  tensors: [{ name: "fc1.weight", dtype: "float32", shape: [2, 3] }, { name: "fc1.bias", dtype: "float32", shape: [3] }],
  steps: 4,
  batch_size: 64,
  lr: 0.05,
  loss_before: 2.3,
  loss_after: 1.9,
  profile: { runtime: "onnxruntime-node 1.30.0", ep: "cpu", threads: 1, graph_optimization: "disabled", isa: "avx2", platform: "linux-x64" }
}
const envelope = Effect.runSync(encodeEnvelope(header, [
  float32Bytes(new Float32Array([0.5, -1, 2, 0, 0.25, 3])),
  float32Bytes(new Float32Array([1, 2, 3]))
]))
const envelopeHash = `0x${createHash("sha256").update(envelope).digest("hex")}`

// Each test spawns the CLI (~1 s of CPU for module loading); independent runs of a test go in parallel.
describe("r3mes-miner ipfs cid", () => {
  it("prints the golden CID of \"hello world\\n\" and of the multi-chunk file, storing nothing", async () => {
    const cwd = mkdtempSync(join(work, "cwd-"))
    const [hello, multi] = await Promise.all([
      cli(["ipfs", "cid", file("hello.txt", golden.text)], cwd),
      cli(["ipfs", "cid", file("multi.bin", multiChunk.bytes())], cwd)
    ])
    assert.strictEqual(hello.status, 0, hello.stderr)
    assert.strictEqual(hello.stdout, `${golden.cid}\n`)
    assert.strictEqual(multi.stdout, `${multiChunk.cid}\n`)
    // No data dir (./.r3mes by default) or anything else appeared.
    assert.deepStrictEqual(readdirSync(cwd), [])
  })

  it("a missing file is exit 1, an invalid --ipfs exit 2, a malformed CID exit 1: one line and a hint", async () => {
    const [missing, badApi, badCid] = await Promise.all([
      cli(["ipfs", "cid", join(work, "no-such-file")]),
      cli(["ipfs", "pins", "--ipfs", "ftp://example"]),
      cli(["ipfs", "unpin", "not-a-cid", "--data-dir", join(work, "data-bad-cid")])
    ])
    assert.strictEqual(missing.status, 1)
    assert.include(missing.stderr, "cannot read")
    assert.include(missing.stderr, "no-such-file")
    assert.strictEqual(missing.stdout, "")
    assert.strictEqual(badApi.status, 2)
    assert.include(badApi.stderr, "--ipfs ftp://example is invalid")
    assert.strictEqual(badCid.status, 1)
    assert.include(badCid.stderr, "is not a CID")
    assert.include(badCid.stderr, "hint: ")
  })
})

describe("r3mes-miner ipfs add / pins / cat / unpin / gc on the embedded store", () => {
  it("round trip in --data-dir", async () => {
    const dataDir = join(work, "data")
    const add = await cli(["ipfs", "add", file("multi-add.bin", multiChunk.bytes()), "--data-dir", dataDir])
    assert.strictEqual(add.status, 0, add.stderr)
    assert.strictEqual(add.stdout, `${multiChunk.cid}\n`)
    assert.isTrue(existsSync(join(dataDir, "ipfs")))
    // One process at a time: the embedded repository is locked by whoever has it open.
    const pins = await cli(["ipfs", "pins", "--data-dir", dataDir])
    assert.strictEqual(pins.stdout, `${multiChunk.cid}\n`)
    const cat = await cli(["ipfs", "cat", multiChunk.cid, "--data-dir", dataDir])
    assert.strictEqual(cat.status, 0, cat.stderr)
    assert.isTrue(cat.stdoutBytes.equals(Buffer.from(multiChunk.bytes())))
    const unpin = await cli(["ipfs", "unpin", multiChunk.cid, "--data-dir", dataDir])
    assert.strictEqual(unpin.status, 0, unpin.stderr)
    const gc = await cli(["ipfs", "gc", "--data-dir", dataDir])
    assert.strictEqual(gc.stdout, `removed ${multiChunk.blocks} blocks\n`)
  }, 60_000)
})

describe("r3mes-miner gradient inspect", () => {
  it("a file: the header as JSON, the tensors, gradient_hash = sha256 of the envelope, checked by --expect-hash", async () => {
    const path = file("g.r3gr", envelope)
    const [plain, match] = await Promise.all([
      cli(["gradient", "inspect", path]),
      cli(["gradient", "inspect", path, "--expect-hash", envelopeHash.toUpperCase().replace("0X", "0x")])
    ])
    assert.strictEqual(plain.status, 0, plain.stderr)
    const report = JSON.parse(plain.stdout)
    assert.deepStrictEqual(report.header, header)
    assert.strictEqual(report.gradient_hash, envelopeHash)
    assert.include(report.gradient_hash_of, "sha256")
    assert.strictEqual(report.bytes, envelope.length)
    assert.isNull(report.hash_check)
    assert.strictEqual(report.cid.slice(0, 2), "Qm")
    assert.deepStrictEqual(report.tensors.map((t: { name: string; bytes: number }) => [t.name, t.bytes]), [
      ["fc1.weight", 24],
      ["fc1.bias", 12]
    ])
    assert.strictEqual(report.tensors[1].offset + 12, envelope.length)
    assert.strictEqual(match.status, 0, match.stderr)
    assert.isTrue(JSON.parse(match.stdout).hash_check.matches)
  })

  it("exit 1 for another hash, not an envelope, a truncated one; exit 2 for a malformed --expect-hash", async () => {
    const path = file("g2.r3gr", envelope)
    const [mismatch, text, truncated, malformed] = await Promise.all([
      cli(["gradient", "inspect", path, "--expect-hash", `0x${"ab".repeat(32)}`]),
      cli(["gradient", "inspect", file("hello2.txt", golden.text)]),
      cli(["gradient", "inspect", file("cut.r3gr", envelope.subarray(0, envelope.length - 3))]),
      cli(["gradient", "inspect", path, "--expect-hash", "0x1234"])
    ])
    assert.strictEqual(mismatch.status, 1)
    assert.isFalse(JSON.parse(mismatch.stdout).hash_check.matches)
    assert.include(mismatch.stderr, "does not match")
    assert.strictEqual(text.status, 1)
    assert.include(text.stderr, "bad magic")
    assert.strictEqual(truncated.status, 1)
    assert.include(truncated.stderr, "invalid gradient envelope")
    assert.strictEqual(malformed.status, 2)
  })

  it("a CID: fetched from the embedded store in --data-dir", async () => {
    const dataDir = join(work, "data-inspect")
    const add = await cli(["ipfs", "add", file("g3.r3gr", envelope), "--data-dir", dataDir])
    const cid = add.stdout.trim()
    const run = await cli(["gradient", "inspect", cid, "--data-dir", dataDir, "--expect-hash", envelopeHash])
    assert.strictEqual(run.status, 0, run.stderr)
    const report = JSON.parse(run.stdout)
    assert.deepStrictEqual(report.source, { cid })
    assert.deepStrictEqual(report.header, header)
    assert.isTrue(report.hash_check.matches)
  }, 30_000)
})
