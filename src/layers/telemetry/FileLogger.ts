import { closeSync, existsSync, fstatSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from "node:fs"
import { dirname } from "node:path"
import { Cause, Context, Effect, Layer, Logger, type LogLevel, Option, References, Tracer } from "effect"
import { classify } from "../../domain/classify.ts"
import { ResourceError } from "../../domain/errors.ts"
import type { MinerConfig } from "../../domain/MinerConfig.ts"
import { makeRedactor, type SecretInput, secretsOf } from "../../domain/redaction.ts"
import { explainPathError } from "../pathAccess.ts"

const logFileSetting = "--log-file (R3MES_LOG_FILE)"

/** Where log lines go besides the file. The file always gets every line. */
export type ConsoleMode =
  /** No console output: the CLI renders its own progress, or prints JSON on stdout (`--json`). */
  | "none"
  /** Plain text lines on stderr (stdout stays clean for `--json`). */
  | "stderr"
  /** Plain text lines on stdout. */
  | "stdout"

export interface FileLoggerOptions {
  /** The log file (R3MES_LOG_FILE); its directory is created. */
  readonly path: string
  /** The file is rotated before it would grow past this many bytes. Default 10 MiB. */
  readonly maxBytes?: number | undefined
  /** Rotated files kept (`miner.log.1` newest … `miner.log.<keep>` oldest). Default 3. */
  readonly keep?: number | undefined
  /** Values that must never be written (private key, admin token): replaced by `<redacted>` in every line. */
  readonly secrets?: ReadonlyArray<SecretInput> | undefined
  /** Default "none". */
  readonly console?: ConsoleMode | undefined
  /**
   * Writes a console line (newline included) instead of the stream of `console`: the CLI's progress bar passes
   * its own, which clears the bar before the line and draws it again after, so lines are never glued onto it.
   */
  readonly consoleWrite?: ((text: string) => void) | undefined
  /** Lowest level the console gets (the file gets everything the global minimum level lets through). Default "Info". */
  readonly consoleLevel?: LogLevel.Severity | undefined
  /**
   * Which component wrote a line, when no `logger` log annotation says it: the first span (innermost first) whose
   * name starts with a key gives its value. Default: `MiningCoordinator.` → `atomic_coordinator`,
   * `MiningLoop.` → `mining_loop`, `Recovery.` → `recovery`.
   */
  readonly componentSpans?: Readonly<Record<string, string>> | undefined
  /** `logger` of lines that match nothing. Default `r3mes_miner`. */
  readonly defaultComponent?: string | undefined
}

/** One line of the log file, as written (plus the annotations other than `logger` and `transaction_id`). */
export interface LogLine {
  readonly timestamp: string
  readonly level: string
  readonly logger: string
  readonly transaction_id?: string
  readonly message: string
  readonly cause?: string
  readonly annotations?: Record<string, unknown>
  /** Log spans (`Effect.withLogSpan`), label → milliseconds since it started. */
  readonly spans?: Record<string, number>
  /** The current tracing span, to find the line's trace in an OTLP backend. */
  readonly span?: string
  readonly trace_id?: string
  readonly span_id?: string
  readonly fiber: string
}

export const defaultMaxBytes = 10 * 1024 * 1024
export const defaultKeep = 3

const defaultComponentSpans: Readonly<Record<string, string>> = {
  "MiningCoordinator.": "atomic_coordinator",
  "MiningLoop.": "mining_loop",
  "Recovery.": "recovery"
}

/** The coordinator's ids (`tx-<round>-<chunk>-<8 hex>`), for lines that name a transaction only in their text. */
const transactionIdInText = /\btx-\d+-\d+-[0-9a-f]{8}\b/
const transactionIdAttribute = "r3mes.transaction_id"

const severity: Record<LogLevel.LogLevel, number> = {
  All: 0,
  Trace: 1,
  Debug: 2,
  Info: 3,
  Warn: 4,
  Error: 5,
  Fatal: 6,
  None: 7
}

/** JSON.stringify that never throws: bigints as decimal strings, errors as their message, cycles cut. */
const safeJson = (value: unknown): string => {
  const seen = new WeakSet<object>()
  try {
    return JSON.stringify(value, (_key, v: unknown) => {
      if (typeof v === "bigint") return v.toString()
      if (v instanceof Error) return { name: v.name, message: v.message }
      if (typeof v === "object" && v !== null) {
        if (seen.has(v)) return "[circular]"
        seen.add(v)
      }
      return v
    }) ?? String(value)
  } catch {
    return String(value)
  }
}

const messageText = (message: unknown): string => {
  const parts = Array.isArray(message) ? message : [message]
  return parts.map((part) => (typeof part === "string" ? part : safeJson(part))).join(" ")
}

/** The current span and its ancestors, innermost first (external parents have no name or attributes). */
const spanChain = function*(span: Tracer.AnySpan | undefined): Generator<Tracer.Span> {
  let current: Tracer.AnySpan | undefined = span
  while (current !== undefined && current._tag === "Span") {
    yield current
    current = Option.getOrUndefined(current.parent)
  }
}

/**
 * The JSON object of one log call. `transaction_id` comes from a `transaction_id` log annotation, else a
 * transaction id in the message, else the `r3mes.transaction_id` attribute of the nearest span that has one;
 * `logger` from a `logger` annotation, else the enclosing spans' names (see `componentSpans`).
 */
const toLogLine = (
  options: Logger.Options<unknown>,
  componentSpans: ReadonlyArray<readonly [string, string]>,
  defaultComponent: string
): LogLine => {
  const { cause, date, fiber, logLevel, message } = options
  const { logger, transaction_id, ...annotations } = fiber.getRef(References.CurrentLogAnnotations)
  const span = Context.getOrUndefined(fiber.context, Tracer.ParentSpan)
  const text = messageText(message)

  let transactionId = typeof transaction_id === "string" ? transaction_id : transactionIdInText.exec(text)?.[0]
  let component = typeof logger === "string" ? logger : undefined
  for (const s of spanChain(span)) {
    if (transactionId === undefined) {
      const attribute = s.attributes.get(transactionIdAttribute)
      if (typeof attribute === "string") transactionId = attribute
    }
    if (component === undefined) component = componentSpans.find(([prefix]) => s.name.startsWith(prefix))?.[1]
    if (transactionId !== undefined && component !== undefined) break
  }

  const now = date.getTime()
  const logSpans = fiber.getRef(References.CurrentLogSpans)
  return {
    timestamp: date.toISOString(),
    level: logLevel.toUpperCase(),
    logger: component ?? defaultComponent,
    ...(transactionId === undefined ? {} : { transaction_id: transactionId }),
    message: text,
    ...(cause.reasons.length === 0 ? {} : { cause: Cause.pretty(cause) }),
    ...(Object.keys(annotations).length === 0 ? {} : { annotations }),
    ...(logSpans.length === 0 ? {} : { spans: Object.fromEntries(logSpans.map(([label, t]) => [label, now - t])) }),
    ...(span === undefined ? {} : {
      ...(span._tag === "Span" ? { span: span.name } : {}),
      trace_id: span.traceId,
      span_id: span.spanId
    }),
    fiber: `#${fiber.id}`
  }
}

/**
 * An append-only file that rotates itself: before a line would take it past `maxBytes`, `path` becomes
 * `path.1`, `path.1` becomes `path.2` … and the oldest beyond `keep` is dropped. Writes are synchronous so a line
 * is on disk before the next effect runs: the log is most needed after a crash, and lines stay in order.
 */
class RotatingFile {
  readonly path: string
  readonly maxBytes: number
  readonly keep: number
  private fd: number
  private size: number
  private reportedFailure = false
  constructor(path: string, maxBytes: number, keep: number) {
    this.path = path
    this.maxBytes = maxBytes
    this.keep = keep
    mkdirSync(dirname(path), { recursive: true })
    this.fd = openSync(path, "a")
    this.size = fstatSync(this.fd).size
  }

  write(line: string): void {
    const bytes = Buffer.from(line + "\n", "utf8")
    try {
      if (this.size > 0 && this.size + bytes.length > this.maxBytes) this.rotate()
      writeSync(this.fd, bytes)
      this.size += bytes.length
    } catch (error) {
      // A full disk must not stop the miner; say so once, on stderr (stdout may carry --json output).
      if (!this.reportedFailure) {
        this.reportedFailure = true
        process.stderr.write(`r3mes-miner: cannot write the log file ${this.path}: ${String(error)}\n`)
      }
    }
  }

  private rotate(): void {
    closeSync(this.fd)
    if (this.keep === 0) {
      rmSync(this.path, { force: true })
    } else {
      for (let i = this.keep - 1; i >= 1; i--) {
        if (existsSync(`${this.path}.${i}`)) renameSync(`${this.path}.${i}`, `${this.path}.${i + 1}`)
      }
      renameSync(this.path, `${this.path}.1`)
    }
    this.fd = openSync(this.path, "a")
    this.size = 0
  }

  close(): void {
    closeSync(this.fd)
  }
}

const consoleLine = (line: LogLine): string =>
  [
    line.timestamp,
    line.level.padEnd(5),
    `[${line.logger}]`,
    ...(line.transaction_id === undefined || line.message.includes(line.transaction_id) ? [] : [line.transaction_id]),
    line.message,
    ...(line.cause === undefined ? [] : [`\n${line.cause}`])
  ].join(" ")

/**
 * Log events on the current span, like effect's `Logger.tracerLogger`, but redacted: OTLP traces carry them out of
 * the machine.
 */
const redactedTracerLogger = (redact: (text: string) => string) =>
  Logger.make(({ cause, fiber, logLevel, message }) => {
    const span = Context.getOrUndefined(fiber.context, Tracer.ParentSpan)
    if (span === undefined || span._tag !== "Span" || span.status._tag === "Ended") return
    const attributes: Record<string, unknown> = {}
    for (const [key, value] of Object.entries(fiber.getRef(References.CurrentLogAnnotations))) {
      attributes[key] = typeof value === "string" ? redact(value) : value
    }
    attributes["effect.fiberId"] = fiber.id
    attributes["effect.logLevel"] = logLevel.toUpperCase()
    if (cause.reasons.length > 0) attributes["effect.cause"] = redact(Cause.pretty(cause))
    span.event(redact(messageText(message)), BigInt(Date.now()) * 1_000_000n, attributes)
  })

export const FileLogger: {
  readonly layer: (options: FileLoggerOptions) => Layer.Layer<never, ResourceError>
  readonly layerFromConfig: (
    config: Pick<MinerConfig, "logFile" | "privateKey" | "adminToken" | "rpcUrl" | "ipfsApi" | "fleetDatabaseUrl">,
    options?: Omit<FileLoggerOptions, "path">
  ) => Layer.Layer<never, ResourceError>
} = {
  /**
   * Replaces the default loggers with: JSON lines in `path` (rotated, redacted), span events for the tracer
   * (redacted), and optionally plain lines on the console (redacted). Fails with a ResourceError when the file
   * cannot be opened. Use it for the whole program (`Effect.provide` at the root, or below every other layer) so
   * the logs of building the other layers land in the file too.
   */
  layer: (options: FileLoggerOptions): Layer.Layer<never, ResourceError> => {
    const redact = makeRedactor(options.secrets ?? [])
    const componentSpans = Object.entries(options.componentSpans ?? defaultComponentSpans)
    const defaultComponent = options.defaultComponent ?? "r3mes_miner"
    const consoleMode = options.console ?? "none"
    const consoleMinimum = severity[options.consoleLevel ?? "Info"]

    const file = Effect.acquireRelease(
      Effect.try({
        try: () => new RotatingFile(options.path, options.maxBytes ?? defaultMaxBytes, options.keep ?? defaultKeep),
        catch: (error) => {
          // The hint names the real culprit: mkdir reports a file in the way as EEXIST, a read-only mount as ENOENT.
          const explained = explainPathError(error, dirname(options.path))
          const classified = classify(explained, "", { setting: logFileSetting })
          return new ResourceError({
            message: `cannot open the log file ${options.path}`,
            resource: "log file",
            cause: classified.cause ?? String(error),
            hint: classified.hint ?? `set ${logFileSetting} to a writable path`
          })
        }
      }),
      (f) => Effect.sync(() => f.close())
    )

    const loggers = Effect.map(file, (f) => {
      const fileLogger = Logger.make((entry: Logger.Options<unknown>) => {
        const line = toLogLine(entry, componentSpans, defaultComponent)
        const text = redact(safeJson(line))
        f.write(text)
        if (consoleMode !== "none" && severity[entry.logLevel] >= consoleMinimum) {
          const out = redact(consoleLine(line)) + "\n"
          if (options.consoleWrite !== undefined) options.consoleWrite(out)
          else if (consoleMode === "stderr") process.stderr.write(out)
          else process.stdout.write(out)
        }
      })
      return [fileLogger, redactedTracerLogger(redact)] as const
    })

    return Layer.effect(
      Logger.CurrentLoggers,
      Effect.map(loggers, (list) => new Set<Logger.Logger<unknown, any>>(list))
    )
  },

  /**
   * `layer` on the miner's settings: R3MES_LOG_FILE, with the private key, the admin token and the RPC and Kubo
   * URLs' keys redacted (`secretsOf`).
   */
  layerFromConfig: (
    config: Pick<MinerConfig, "logFile" | "privateKey" | "adminToken" | "rpcUrl" | "ipfsApi" | "fleetDatabaseUrl">,
    options: Omit<FileLoggerOptions, "path"> = {}
  ): Layer.Layer<never, ResourceError> =>
    FileLogger.layer({ ...options, path: config.logFile, secrets: [...secretsOf(config), ...(options.secrets ?? [])] })
}
