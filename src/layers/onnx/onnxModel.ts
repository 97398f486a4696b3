/**
 * A minimal ONNX model writer: the protobuf wire encoding of the parts of onnx.proto (ModelProto, GraphProto,
 * NodeProto, AttributeProto, TensorProto, ValueInfoProto) that the training graphs use. Field numbers are those of
 * onnx.proto (IR version 8, opset 17); repeated scalars are written unpacked, as proto2 does.
 */

export const IR_VERSION = 8
export const OPSET = 17

/** TensorProto.DataType values. */
export const ElemType = { float32: 1, int8: 3, int64: 7, bool: 9, float64: 11 } as const
export type ElemType = keyof typeof ElemType

export type Attribute =
  | { readonly kind: "int"; readonly value: number }
  | { readonly kind: "ints"; readonly value: ReadonlyArray<number> }
  | { readonly kind: "float"; readonly value: number }

export const attr = {
  int: (value: number): Attribute => ({ kind: "int", value }),
  ints: (value: ReadonlyArray<number>): Attribute => ({ kind: "ints", value }),
  float: (value: number): Attribute => ({ kind: "float", value })
} as const

export interface Node {
  readonly opType: string
  readonly inputs: ReadonlyArray<string>
  readonly outputs: ReadonlyArray<string>
  readonly name: string
  readonly attributes: Readonly<Record<string, Attribute>>
}

/** A dimension: a fixed size, or a symbolic name (e.g. the batch). */
export type Dim = number | string

export interface ValueInfo {
  readonly name: string
  readonly elemType: ElemType
  readonly shape: ReadonlyArray<Dim>
}

export interface Initializer {
  readonly name: string
  readonly elemType: ElemType
  readonly dims: ReadonlyArray<number>
  /** Little-endian element bytes. */
  readonly raw: Uint8Array
}

export interface Graph {
  readonly name: string
  readonly nodes: ReadonlyArray<Node>
  readonly inputs: ReadonlyArray<ValueInfo>
  readonly outputs: ReadonlyArray<ValueInfo>
  readonly initializers: ReadonlyArray<Initializer>
}

// ---------------------------------------------------------------------------------------------------------------
// Protobuf wire format

const VARINT = 0
const LEN = 2
const FIXED32 = 5

class Writer {
  private readonly chunks: Array<Uint8Array> = []
  private length = 0

  private push(bytes: Uint8Array): void {
    this.chunks.push(bytes)
    this.length += bytes.length
  }

  private varint(value: bigint): void {
    let v = BigInt.asUintN(64, value)
    const out: Array<number> = []
    do {
      const byte = Number(v & 0x7fn)
      v >>= 7n
      out.push(v === 0n ? byte : byte | 0x80)
    } while (v !== 0n)
    this.push(Uint8Array.from(out))
  }

  private tag(field: number, wire: number): void {
    this.varint(BigInt((field << 3) | wire))
  }

  int(field: number, value: number | bigint): this {
    this.tag(field, VARINT)
    this.varint(BigInt(value))
    return this
  }

  float(field: number, value: number): this {
    this.tag(field, FIXED32)
    const b = new Uint8Array(4)
    new DataView(b.buffer).setFloat32(0, value, true)
    this.push(b)
    return this
  }

  bytes(field: number, value: Uint8Array): this {
    this.tag(field, LEN)
    this.varint(BigInt(value.length))
    this.push(value)
    return this
  }

  string(field: number, value: string): this {
    return this.bytes(field, new TextEncoder().encode(value))
  }

  finish(): Uint8Array {
    const out = new Uint8Array(this.length)
    let offset = 0
    for (const c of this.chunks) {
      out.set(c, offset)
      offset += c.length
    }
    return out
  }
}

// AttributeProto.AttributeType
const ATTR_FLOAT = 1
const ATTR_INT = 2
const ATTR_INTS = 7

const encodeAttribute = (name: string, a: Attribute): Uint8Array => {
  const w = new Writer().string(1, name)
  switch (a.kind) {
    case "float":
      w.float(2, a.value).int(20, ATTR_FLOAT)
      break
    case "int":
      w.int(3, a.value).int(20, ATTR_INT)
      break
    case "ints":
      for (const v of a.value) w.int(8, v)
      w.int(20, ATTR_INTS)
      break
  }
  return w.finish()
}

const encodeNode = (node: Node): Uint8Array => {
  const w = new Writer()
  for (const i of node.inputs) w.string(1, i)
  for (const o of node.outputs) w.string(2, o)
  w.string(3, node.name).string(4, node.opType)
  for (const [name, a] of Object.entries(node.attributes)) w.bytes(5, encodeAttribute(name, a))
  return w.finish()
}

const encodeTensor = (t: Initializer): Uint8Array => {
  const w = new Writer()
  for (const d of t.dims) w.int(1, d)
  return w.int(2, ElemType[t.elemType]).string(8, t.name).bytes(9, t.raw).finish()
}

const encodeValueInfo = (v: ValueInfo): Uint8Array => {
  const shape = new Writer()
  for (const d of v.shape) {
    shape.bytes(1, typeof d === "number" ? new Writer().int(1, d).finish() : new Writer().string(2, d).finish())
  }
  const tensorType = new Writer().int(1, ElemType[v.elemType]).bytes(2, shape.finish()).finish()
  const type = new Writer().bytes(1, tensorType).finish()
  return new Writer().string(1, v.name).bytes(2, type).finish()
}

const encodeGraph = (g: Graph): Uint8Array => {
  const w = new Writer()
  for (const n of g.nodes) w.bytes(1, encodeNode(n))
  w.string(2, g.name)
  for (const t of g.initializers) w.bytes(5, encodeTensor(t))
  for (const i of g.inputs) w.bytes(11, encodeValueInfo(i))
  for (const o of g.outputs) w.bytes(12, encodeValueInfo(o))
  return w.finish()
}

/** The serialized ModelProto of a graph (default domain, opset 17). */
export const encodeModel = (graph: Graph): Uint8Array => {
  const opset = new Writer().string(1, "").int(2, OPSET).finish()
  return new Writer()
    .int(1, IR_VERSION)
    .string(2, "r3mes-miner")
    .string(3, "1")
    .bytes(7, encodeGraph(graph))
    .bytes(8, opset)
    .finish()
}

// ---------------------------------------------------------------------------------------------------------------
// Graph builder

export interface MatMulShape {
  readonly m: Dim
  readonly k: Dim
  readonly n: Dim
}

/**
 * Builds a graph node by node; every op has one output named after its node unless an output name is given.
 * `matMul` records its multiply-adds so a graph knows its FLOPs per example (one dimension of each product is the
 * symbolic batch).
 */
export class GraphBuilder {
  readonly elemType: ElemType
  private readonly nodes: Array<Node> = []
  private readonly inputs: Array<ValueInfo> = []
  private readonly outputs: Array<ValueInfo> = []
  private readonly initializers: Array<Initializer> = []
  private counter = 0
  private flopsPerExample = 0

  constructor(elemType: ElemType) {
    this.elemType = elemType
  }

  input(name: string, shape: ReadonlyArray<Dim>, elemType: ElemType = this.elemType): string {
    this.inputs.push({ name, elemType, shape })
    return name
  }

  output(value: string, shape: ReadonlyArray<Dim>, elemType: ElemType = this.elemType): void {
    this.outputs.push({ name: value, elemType, shape })
  }

  op(opType: string, inputs: ReadonlyArray<string>, attributes: Record<string, Attribute> = {}, output?: string): string {
    const name = `${opType.toLowerCase()}_${this.counter++}`
    const out = output ?? name
    this.nodes.push({ opType, inputs, outputs: [out], name, attributes })
    return out
  }

  /** A scalar constant of the graph's element type. */
  scalar(value: number): string {
    const name = `const_${this.counter++}`
    const raw = new Uint8Array(this.elemType === "float64" ? 8 : 4)
    const view = new DataView(raw.buffer)
    if (this.elemType === "float64") view.setFloat64(0, value, true)
    else view.setFloat32(0, value, true)
    this.initializers.push({ name, elemType: this.elemType, dims: [], raw })
    return name
  }

  /** A 1-D int64 constant (axes, shapes). */
  int64s(values: ReadonlyArray<number>): string {
    const name = `const_${this.counter++}`
    const raw = new Uint8Array(values.length * 8)
    const view = new DataView(raw.buffer)
    values.forEach((v, i) => view.setBigInt64(i * 8, BigInt(v), true))
    this.initializers.push({ name, elemType: "int64", dims: [values.length], raw })
    return name
  }

  /** a [m, k] · b [k, n]; `batch` names the symbolic dimension (the FLOP count is per unit of it). */
  matMul(a: string, b: string, shape: MatMulShape, batch: string, output?: string): string {
    const sizes = [shape.m, shape.k, shape.n]
    const fixed = sizes.filter((d): d is number => typeof d === "number")
    if (sizes.filter((d) => d === batch).length !== 1 || fixed.length !== 2) {
      throw new Error(`matMul shape ${JSON.stringify(shape)} must have exactly one ${batch} dimension`)
    }
    this.flopsPerExample += 2 * fixed[0]! * fixed[1]!
    return this.op("MatMul", [a, b], {}, output)
  }

  get matMulFlopsPerExample(): number {
    return this.flopsPerExample
  }

  build(name: string): Graph {
    return { name, nodes: [...this.nodes], inputs: [...this.inputs], outputs: [...this.outputs], initializers: [...this.initializers] }
  }
}
