import { createHash } from "node:crypto"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import fc from "fast-check"
import type { ValidationError } from "../../src/domain/errors.ts"
import {
  canonicalJson,
  decodeEnvelope,
  type DecodedEnvelope,
  type DeterminismProfile,
  dtypeBytes,
  encodeEnvelope,
  type EnvelopeHeader,
  FORMAT,
  tensorByteLength,
  type TensorSpec,
  verifyEnvelopeHash
} from "../../src/domain/gradientEnvelope.ts"

const sha256 = (bytes: Uint8Array): Uint8Array => createHash("sha256").update(bytes).digest()
const hashHex = (bytes: Uint8Array): string => `0x${createHash("sha256").update(bytes).digest("hex")}`

const encode = (header: EnvelopeHeader, tensors: ReadonlyArray<Uint8Array>): Uint8Array =>
  Effect.runSync(encodeEnvelope(header, tensors))
const decode = (bytes: Uint8Array): Exit.Exit<DecodedEnvelope, ValidationError> => Effect.runSyncExit(decodeEnvelope(bytes))
const verify = (bytes: Uint8Array, expected: string): Exit.Exit<void, ValidationError> =>
  Effect.runSyncExit(verifyEnvelopeHash(bytes, expected, sha256))

/** The ValidationError a decode failed with (and a test failure if it succeeded or failed otherwise). */
const decodeError = (bytes: Uint8Array): ValidationError => {
  const exit = decode(bytes)
  if (Exit.isSuccess(exit)) assert.fail(`decoded, but should have been rejected: ${JSON.stringify(exit.value.header)}`)
  const error = Effect.runSync(Effect.flip(decodeEnvelope(bytes)))
  assert.strictEqual(error._tag, "ValidationError")
  return error
}

/** An envelope with an arbitrary prefix, header text and data, bypassing the encoder's checks. */
const rawEnvelope = (
  headerText: string,
  data: Uint8Array = new Uint8Array(0),
  { magic = "R3GR", version = 1, headerLength }: { magic?: string; version?: number; headerLength?: number } = {}
): Uint8Array => {
  const header = new TextEncoder().encode(headerText)
  const out = new Uint8Array(9 + header.byteLength + data.byteLength)
  out.set(new TextEncoder().encode(magic).subarray(0, 4), 0)
  out[4] = version
  new DataView(out.buffer).setUint32(5, headerLength ?? header.byteLength, true)
  out.set(header, 9)
  out.set(data, 9 + header.byteLength)
  return out
}

const baseHeader: EnvelopeHeader = {
  format: FORMAT,
  round_id: "7",
  chunk_id: 3,
  miner: "0x00000000000000000000000000000000000000aa",
  model_hash: "0xmodel",
  encoding: "pseudo-gradient",
  tensors: [{ name: "w", dtype: "float32", shape: [2, 3] }, { name: "b", dtype: "int8", shape: [3] }],
  steps: 10,
  batch_size: 32,
  lr: 0.01,
  loss_before: 2.5,
  loss_after: null,
  profile: {
    runtime: "onnxruntime-node 1.30.0",
    ep: "cpu",
    threads: 1,
    graph_optimization: "disabled",
    isa: "avx2",
    platform: "linux-x64"
  }
}
const baseTensors = [new Uint8Array(24).map((_, i) => i), new Uint8Array([1, 2, 3])]
const baseData = new Uint8Array([...baseTensors[0]!, ...baseTensors[1]!])

// ---------------------------------------------------------------------------------------------------------------
// Arbitraries: every header the schema accepts, with tensors of exactly the right sizes.

const dtypes = Object.keys(dtypeBytes) as Array<keyof typeof dtypeBytes>
/** JSON has one zero: -0 is written "0" and reads back as 0, so the generator only makes the zero JSON can hold. */
const finite = fc.double({ noNaN: true, noDefaultInfinity: true }).map((x) => (Object.is(x, -0) ? 0 : x))
const text = fc.string({ unit: "binary", maxLength: 12 })

const tensorSpec: fc.Arbitrary<TensorSpec> = fc.record({
  name: fc.string({ unit: "binary", minLength: 1, maxLength: 8 }),
  dtype: fc.constantFrom(...dtypes),
  shape: fc.array(fc.integer({ min: 0, max: 5 }), { maxLength: 3 })
})

const nonEmpty = fc.string({ unit: "binary", minLength: 1, maxLength: 12 })
const profile: fc.Arbitrary<DeterminismProfile> = fc.record({
  runtime: nonEmpty,
  ep: nonEmpty,
  threads: fc.integer({ min: 1, max: 256 }),
  graph_optimization: nonEmpty,
  isa: nonEmpty,
  platform: nonEmpty
})

const header: fc.Arbitrary<EnvelopeHeader> = fc.record({
  format: fc.constant(FORMAT),
  round_id: fc.bigInt({ min: 0n, max: 2n ** 256n - 1n }).map(String),
  chunk_id: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
  miner: fc.uint8Array({ minLength: 20, maxLength: 20 }).map((b) => `0x${Buffer.from(b).toString("hex")}`),
  model_hash: text,
  encoding: fc.string({ unit: "binary", minLength: 1, maxLength: 12 }),
  tensors: fc.uniqueArray(tensorSpec, { maxLength: 4, selector: (t) => t.name }),
  steps: fc.nat(),
  batch_size: fc.nat(),
  lr: finite,
  loss_before: fc.option(finite, { nil: null }),
  loss_after: fc.option(finite, { nil: null }),
  profile
})

const envelopeInput = header.chain((h) =>
  fc.tuple(
    fc.constant(h),
    fc.tuple(...h.tensors.map((spec) => {
      const n = tensorByteLength(spec)
      return fc.uint8Array({ minLength: n, maxLength: n })
    }))
  )
)

const sameEnvelope = (decoded: DecodedEnvelope, h: EnvelopeHeader, tensors: ReadonlyArray<Uint8Array>) => {
  assert.deepStrictEqual(decoded.header, h)
  assert.strictEqual(decoded.tensors.length, tensors.length)
  decoded.tensors.forEach((t, i) => {
    assert.deepStrictEqual(t.spec, h.tensors[i])
    assert.deepStrictEqual(Uint8Array.from(t.bytes), tensors[i])
  })
}

describe("gradient envelope: properties", () => {
  it("decode(encode(x)) = x, and the hash of the bytes checks out", () => {
    fc.assert(
      fc.property(envelopeInput, ([h, tensors]) => {
        const bytes = encode(h, tensors)
        const exit = decode(bytes)
        assert.isTrue(Exit.isSuccess(exit), String(exit))
        if (Exit.isSuccess(exit)) sameEnvelope(exit.value, h, tensors)
        assert.isTrue(Exit.isSuccess(verify(bytes, hashHex(bytes))))
      }),
      { numRuns: 300 }
    )
  })

  it("the encoding is canonical: an envelope decodes only from the bytes its own encoding gives", () => {
    fc.assert(
      fc.property(envelopeInput, ([h, tensors]) => {
        const bytes = encode(h, tensors)
        const decoded = Effect.runSync(decodeEnvelope(bytes))
        assert.deepStrictEqual(encode(decoded.header, decoded.tensors.map((t) => t.bytes)), bytes)
      }),
      { numRuns: 100 }
    )
  })

  it("any single flipped byte is detected: the hash check always fails, and decode fails or sees another envelope", () => {
    fc.assert(
      fc.property(
        envelopeInput,
        fc.nat(),
        fc.integer({ min: 1, max: 255 }),
        ([h, tensors], position, mask) => {
          const bytes = encode(h, tensors)
          const expectedHash = hashHex(bytes)
          const flipped = Uint8Array.from(bytes)
          const at = position % bytes.length
          flipped[at] = flipped[at]! ^ mask

          const checked = verify(flipped, expectedHash)
          assert.isTrue(Exit.isFailure(checked), `byte ${at} flipped but the hash still matched`)

          const exit = decode(flipped)
          if (Exit.isSuccess(exit)) {
            // Structure survived (a digit of the header, a tensor byte): it must then be a different envelope,
            // whose own canonical encoding is exactly the flipped bytes, so only the hash can tell them apart.
            const reEncoded = encode(exit.value.header, exit.value.tensors.map((t) => t.bytes))
            assert.deepStrictEqual(reEncoded, flipped)
            assert.notDeepEqual(reEncoded, bytes)
          } else {
            const error = Effect.runSync(Effect.flip(decodeEnvelope(flipped)))
            assert.strictEqual(error._tag, "ValidationError")
          }
        }
      ),
      { numRuns: 500 }
    )
  })

  it("a flipped byte in the 9-byte prefix is always caught by decode", () => {
    fc.assert(
      fc.property(envelopeInput, fc.integer({ min: 0, max: 8 }), fc.integer({ min: 1, max: 255 }), ([h, t], at, mask) => {
        const flipped = encode(h, t)
        flipped[at] = flipped[at]! ^ mask
        decodeError(flipped)
      }),
      { numRuns: 200 }
    )
  })

  it("every truncation, and every extension, is a ValidationError", () => {
    fc.assert(
      fc.property(envelopeInput, fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 8 }), ([h, t], cut, extra) => {
        const bytes = encode(h, t)
        decodeError(bytes.subarray(0, cut % bytes.length))
        decodeError(new Uint8Array([...bytes, ...extra]))
      }),
      { numRuns: 200 }
    )
  })
})

describe("gradient envelope: rejected input (ValidationError)", () => {
  const valid = () => encode(baseHeader, baseTensors)

  it("the reference envelope decodes", () => {
    const bytes = valid()
    assert.strictEqual(new TextDecoder().decode(bytes.subarray(0, 4)), "R3GR")
    assert.strictEqual(bytes[4], 1)
    sameEnvelope(Effect.runSync(decodeEnvelope(bytes)), baseHeader, baseTensors)
    assert.deepStrictEqual(rawEnvelope(canonicalJson(baseHeader), baseData), bytes)
  })

  it("truncated below the prefix, inside the header, inside a tensor", () => {
    const bytes = valid()
    assert.include(decodeError(new Uint8Array(0)).message, "shorter than the prefix")
    assert.include(decodeError(bytes.subarray(0, 8)).message, "shorter than the prefix")
    assert.strictEqual(decodeError(bytes.subarray(0, 20)).field, "header_length")
    assert.include(decodeError(bytes.subarray(0, bytes.length - 1)).message, "runs past the end")
  })

  it("bad magic", () => {
    for (const magic of ["R3GX", "r3gr", "\0\0\0\0", "PK\x03\x04"]) {
      assert.strictEqual(decodeError(rawEnvelope(canonicalJson(baseHeader), baseData, { magic })).field, "magic")
    }
  })

  it("bad version", () => {
    for (const version of [0, 2, 255]) {
      const error = decodeError(rawEnvelope(canonicalJson(baseHeader), baseData, { version }))
      assert.strictEqual(error.field, "version")
      assert.include(error.message, `unsupported version ${version}`)
    }
  })

  it("header length past the end or above the 1 MiB bound", () => {
    const text = canonicalJson(baseHeader)
    assert.strictEqual(decodeError(rawEnvelope(text, baseData, { headerLength: 0xffffffff })).field, "header_length")
    assert.strictEqual(decodeError(rawEnvelope(text, baseData, { headerLength: (1 << 20) + 1 })).field, "header_length")
    // Shorter than the header: the JSON is cut and the rest is read as tensor bytes.
    assert.strictEqual(decodeError(rawEnvelope(text, baseData, { headerLength: text.length - 1 })).field, "header")
  })

  it("non-canonical headers: whitespace, unsorted keys, other number spellings, escapes", () => {
    const canonical = canonicalJson(baseHeader)
    const variants = [
      JSON.stringify(baseHeader), // key order of the object, not sorted
      JSON.stringify(JSON.parse(canonical), null, 1),
      canonical.replace(`"chunk_id":3`, `"chunk_id": 3`),
      canonical.replace(`"lr":0.01`, `"lr":1e-2`),
      canonical.replace(`"steps":10`, `"steps":10.0`),
      canonical.replace(`"encoding":"pseudo-gradient"`, `"encoding":"pseudo\\u002dgradient"`),
      ` ${canonical}`,
      `${canonical}\n`
    ]
    for (const variant of variants) {
      assert.notStrictEqual(variant, canonical)
      const error = decodeError(rawEnvelope(variant, baseData))
      assert.strictEqual(error.field, "header", variant)
    }
  })

  it("headers that are not UTF-8, not JSON, or not the schema", () => {
    const withHeaderBytes = (header: Uint8Array) => {
      const out = new Uint8Array(9 + header.length)
      out.set([0x52, 0x33, 0x47, 0x52, 1])
      new DataView(out.buffer).setUint32(5, header.length, true)
      out.set(header, 9)
      return out
    }
    assert.include(decodeError(withHeaderBytes(new Uint8Array([0x7b, 0xff, 0x7d]))).message, "not UTF-8")
    assert.include(decodeError(rawEnvelope("{not json")).message, "not JSON")
    const reject = (patch: Record<string, unknown>) =>
      decodeError(rawEnvelope(canonicalJson({ ...baseHeader, ...patch }), baseData))
    reject({ format: "pickle" })
    reject({ round_id: "-1" })
    reject({ round_id: "007" })
    reject({ chunk_id: 2 ** 32 })
    reject({ chunk_id: 1.5 })
    reject({ miner: "0x1234" })
    reject({ encoding: "" })
    reject({ steps: -1 })
    reject({ extra: true })
    reject({ loss_after: "NaN" })
    reject({ tensors: [{ name: "w", dtype: "complex64", shape: [2, 3] }] })
    reject({ tensors: [{ name: "w", dtype: "float32", shape: [-1] }] })
    reject({ tensors: [{ name: "", dtype: "float32", shape: [] }] })
    assert.deepStrictEqual(decodeError(rawEnvelope("[]")).field, "header")
  })

  it("the determinism profile: required, every field present with its type, nothing else", () => {
    const reject = (header: Record<string, unknown>) => {
      const error = decodeError(rawEnvelope(canonicalJson(header), baseData))
      assert.strictEqual(error.field, "header")
      return error
    }
    const { profile: _, ...withoutProfile } = baseHeader
    assert.include(reject(withoutProfile).message, "profile")
    reject({ ...baseHeader, profile: null })
    reject({ ...baseHeader, profile: "cpu" })
    for (const field of Object.keys(baseHeader.profile)) {
      const { [field]: _, ...rest } = baseHeader.profile as Record<string, unknown>
      assert.include(reject({ ...baseHeader, profile: rest }).message, field)
    }
    reject({ ...baseHeader, profile: { ...baseHeader.profile, threads: "1" } })
    reject({ ...baseHeader, profile: { ...baseHeader.profile, threads: 0 } })
    reject({ ...baseHeader, profile: { ...baseHeader.profile, threads: 1.5 } })
    reject({ ...baseHeader, profile: { ...baseHeader.profile, ep: "" } })
    reject({ ...baseHeader, profile: { ...baseHeader.profile, isa: 2 } })
    reject({ ...baseHeader, profile: { ...baseHeader.profile, gpu: "none" } })
    // The profile is part of the canonical header: another profile is other bytes, and another hash.
    const other = encode({ ...baseHeader, profile: { ...baseHeader.profile, threads: 2 } }, baseTensors)
    assert.notDeepEqual(other, encode(baseHeader, baseTensors))
    assert.include(new TextDecoder().decode(encode(baseHeader, baseTensors)), `"profile":{"ep":"cpu","graph_optimization":"disabled"`)
  })

  it("wrong tensor sizes: too few bytes, too many bytes, an absurd shape, duplicate names", () => {
    const header = canonicalJson(baseHeader)
    assert.include(decodeError(rawEnvelope(header, baseData.subarray(0, 26))).message, "runs past the end")
    assert.include(decodeError(rawEnvelope(header, new Uint8Array([...baseData, 0]))).message, "after the last tensor")
    const huge = canonicalJson({ ...baseHeader, tensors: [{ name: "w", dtype: "float64", shape: [2 ** 30, 2 ** 30, 2 ** 30] }] })
    assert.include(decodeError(rawEnvelope(huge, baseData)).message, "runs past the end")
    const dup = canonicalJson({
      ...baseHeader,
      tensors: [{ name: "w", dtype: "int8", shape: [1] }, { name: "w", dtype: "int8", shape: [1] }]
    })
    assert.include(decodeError(rawEnvelope(dup, new Uint8Array(2))).message, "duplicate tensor name")
  })

  it("the encoder refuses what the decoder would refuse", () => {
    const fails = (h: EnvelopeHeader, t: ReadonlyArray<Uint8Array>) => {
      const exit = Effect.runSyncExit(encodeEnvelope(h, t))
      assert.isTrue(Exit.isFailure(exit))
      return Effect.runSync(Effect.flip(encodeEnvelope(h, t)))
    }
    assert.include(fails(baseHeader, [baseTensors[0]!, new Uint8Array(4)]).message, "int8 [3] needs 3")
    assert.include(fails(baseHeader, [baseTensors[0]!]).message, "2 tensor specs but 1 tensors")
    assert.strictEqual(fails({ ...baseHeader, lr: Number.NaN }, baseTensors).field, "header")
    assert.strictEqual(fails({ ...baseHeader, lr: Number.POSITIVE_INFINITY }, baseTensors).field, "header")
  })

  it("hash check: the expected hash is sha256 of the whole envelope, compared case-insensitively", () => {
    const bytes = valid()
    assert.isTrue(Exit.isSuccess(verify(bytes, hashHex(bytes).toUpperCase().replace("0X", "0x"))))
    const error = Effect.runSync(Effect.flip(verifyEnvelopeHash(bytes, `0x${"00".repeat(32)}`, sha256)))
    assert.strictEqual(error.field, "gradient_hash")
    assert.include(error.message, hashHex(bytes))
  })
})
