import { Layer } from "effect"
import packageJson from "../../package.json" with { type: "json" }
import type { ResourceError, ValidationError } from "../domain/errors.ts"
import type { MinerConfig } from "../domain/MinerConfig.ts"
import { FileLogger, type FileLoggerOptions } from "../layers/telemetry/FileLogger.ts"
import { Tracing } from "../layers/telemetry/Tracing.ts"

/**
 * Where a running miner's logs and traces go: JSON lines in R3MES_LOG_FILE (secrets redacted), the console at the
 * given level, and OTLP traces when OTEL_EXPORTER_OTLP_ENDPOINT is set. Provide it at the root of a long-running
 * command so every span and log line of the miner reaches the same sinks.
 */
export const observabilityLayer = (
  config: Pick<MinerConfig, "logFile" | "privateKey" | "adminToken" | "rpcUrl" | "ipfsApi" | "fleetDatabaseUrl">,
  console: Omit<FileLoggerOptions, "path">
): Layer.Layer<never, ResourceError | ValidationError> =>
  Layer.merge(FileLogger.layerFromConfig(config, console), Tracing.layer({ serviceVersion: packageJson.version }))
