import { Option, Redacted } from "effect"
import type { MinerConfig } from "./MinerConfig.ts"

/** A secret as callers hold it: plain, wrapped in `Redacted`, or an optional setting. */
export type SecretInput = string | Redacted.Redacted<string> | Option.Option<Redacted.Redacted<string>> | undefined

export const REDACTED = "<redacted>"

const hexKey = /^(?:0x)?([0-9a-fA-F]{64})$/

const escapeRegExp = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")

const plain = (secret: SecretInput): string | undefined => {
  if (secret === undefined) return undefined
  if (typeof secret === "string") return secret
  if (Redacted.isRedacted(secret)) return Redacted.value(secret)
  return Option.match(secret, { onNone: () => undefined, onSome: Redacted.value })
}

/** The secret values of a configuration: the private key and the admin token, when set. */
export const secretsOf = (config: Pick<MinerConfig, "privateKey" | "adminToken">): ReadonlyArray<SecretInput> => [
  config.privateKey,
  config.adminToken
]

/**
 * Builds the last pass every outgoing text (log line, HTTP body, span event) goes through: each occurrence of a
 * configured secret becomes `<redacted>`. A 32-byte hex secret (a private key) matches in any letter case, with or
 * without `0x`, even inside a longer hex string; other secrets match exactly, raw or JSON-escaped. Empty secrets
 * are ignored (they would match everywhere).
 */
export const makeRedactor = (secrets: ReadonlyArray<SecretInput>): (text: string) => string => {
  const hexKeys = new Set<string>()
  const exact = new Set<string>()
  for (const input of secrets) {
    const secret = plain(input)
    if (secret === undefined || secret.length === 0) continue
    const hex = hexKey.exec(secret)
    if (hex !== null) {
      hexKeys.add(`(?:0x)?${hex[1]!.toLowerCase()}`)
    } else {
      exact.add(escapeRegExp(secret))
      exact.add(escapeRegExp(JSON.stringify(secret).slice(1, -1)))
    }
  }
  const passes: Array<RegExp> = []
  if (hexKeys.size > 0) passes.push(new RegExp([...hexKeys].join("|"), "gi"))
  // Longest first, so a secret that contains another one is replaced whole.
  if (exact.size > 0) passes.push(new RegExp([...exact].sort((a, b) => b.length - a.length).join("|"), "g"))
  return (text) => passes.reduce((out, pass) => out.replace(pass, REDACTED), text)
}
