import { Option, Redacted } from "effect"
import type { MinerConfig } from "./MinerConfig.ts"

/** A secret shown as something more useful than `<redacted>`: an RPC URL keeps its scheme, host and port. */
export interface MaskedSecret {
  readonly secret: string
  readonly shownAs: string
}

/** A secret as callers hold it: plain, wrapped in `Redacted`, an optional setting, or masked. */
export type SecretInput =
  | string
  | Redacted.Redacted<string>
  | Option.Option<Redacted.Redacted<string>>
  | MaskedSecret
  | undefined

export const REDACTED = "<redacted>"

const hexKey = /^(?:0x)?([0-9a-fA-F]{64})$/

const escapeRegExp = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")

const plain = (secret: SecretInput): MaskedSecret | undefined => {
  if (secret === undefined) return undefined
  if (typeof secret === "string") return { secret, shownAs: REDACTED }
  if (Redacted.isRedacted(secret)) return { secret: Redacted.value(secret), shownAs: REDACTED }
  if (Option.isOption(secret)) {
    return Option.match(secret, { onNone: () => undefined, onSome: (s) => ({ secret: Redacted.value(s), shownAs: REDACTED }) })
  }
  return secret
}

// ---------------------------------------------------------------------------------------------------------------
// URLs. RPC providers put the API key in the path (Infura `/v3/KEY`, Alchemy `/v2/KEY`), in the query, or in
// user:password@, and some in the host name itself (QuickNode's `NAME.quiknode.pro/KEY`, where the path still holds
// the token). Scheme, host and port are kept, because they are what an operator needs to tell endpoints apart.

/** Everything after the authority: path, query and fragment as written. */
const authority = /^([a-z][a-z0-9+.-]*:\/\/)?([^/?#\\\s]*)(.*)$/is

/**
 * An URL as it may be shown: `scheme://host:port`, followed by `/<redacted>` when it had anything else (user:password@,
 * a path other than `/`, a query or a fragment), e.g. `https://user:pw@rpc.example.com/v3/abc?key=zz` →
 * `https://rpc.example.com/<redacted>`, while `http://127.0.0.1:8545` stays as it is. Text that is no URL keeps only
 * what precedes its first `/`, `?` or `#` and drops anything up to an `@` (it may be a mistyped URL with a key).
 */
export const redactUrl = (input: string): string => {
  const text = input.trim()
  try {
    const url = new URL(text)
    if (url.host !== "") {
      const hidden = url.username !== "" || url.password !== "" || (url.pathname !== "/" && url.pathname !== "") ||
        url.search !== "" || url.hash !== ""
      return `${url.protocol}//${url.host}${hidden ? `/${REDACTED}` : ""}`
    }
  } catch {
    // Not an URL: the fallback below.
  }
  const [, scheme = "", host = "", rest = ""] = authority.exec(text.slice(text.lastIndexOf("@") + 1)) ?? []
  return `${scheme}${host}${rest !== "" || text.includes("@") ? `/${REDACTED}` : ""}`
}

const urlInText = /\b[a-z][a-z0-9+.-]*:\/\/[^\s"'<>`]+/gi
const trailingPunctuation = /[.,;:!?)\]}]+$/

/** Every URL inside a text (an error message, a log line) in its `redactUrl` form. */
export const redactUrlsIn = (text: string): string =>
  text.replace(urlInText, (match) => {
    const tail = trailingPunctuation.exec(match)?.[0] ?? ""
    return redactUrl(match.slice(0, match.length - tail.length)) + tail
  })

/**
 * Shorter tails, path segments and query values are words (`/api/v0`, `mainnet`), not keys, which are 32 characters
 * or more at the usual providers; alone they are left alone, inside their URL they are hidden with it.
 */
const keyLength = 16
/** A password shorter than this would blank ordinary words in every log line; it is still hidden inside its URL. */
const passwordLength = 4

const decoded = (text: string): string => {
  try {
    return decodeURIComponent(text)
  } catch {
    return text
  }
}

/**
 * What `makeRedactor` must hide of an URL that carries secrets: the URL itself, as written and as an URL parser
 * rewrites it (viem prints it without user:password@), shown as `redactUrl` gives it; and its secret parts alone
 * (user:password, the password, and the path-query-fragment tail, path segments and query values of key length),
 * shown as `<redacted>`. Nothing for an URL without secrets, or for a text that is no URL.
 */
export const urlSecrets = (input: string): ReadonlyArray<SecretInput> => {
  const text = input.trim()
  let url: URL
  try {
    url = new URL(text)
  } catch {
    return []
  }
  const shownAs = redactUrl(text)
  if (!shownAs.endsWith(REDACTED)) return []
  const withoutCredentials = new URL(url.href)
  withoutCredentials.username = ""
  withoutCredentials.password = ""
  const tail = url.pathname === "/" ? url.search + url.hash : url.pathname + url.search + url.hash
  const parts = [
    ...[tail, authority.exec(text.slice(text.lastIndexOf("@") + 1))?.[3] ?? ""].filter((t) => t.length >= keyLength),
    url.username !== "" || url.password !== "" ? `${url.username}:${url.password}` : "",
    ...[url.password, decoded(url.password)].filter((p) => p.length >= passwordLength),
    ...url.pathname.split("/").map(decoded).filter((segment) => segment.length >= keyLength),
    ...[...url.searchParams.values()].filter((value) => value.length >= keyLength)
  ]
  return [
    ...[text, url.href, withoutCredentials.href].map((secret) => ({ secret, shownAs })),
    ...parts.filter((part) => part !== "" && part !== "/").map((secret) => ({ secret, shownAs: REDACTED }))
  ]
}

/**
 * What must be hidden of the fleet's database URL, each as `<redacted>` like the private key: the URL as written and
 * as an URL parser rewrites it, user:password, and the password raw and percent-decoded. Its host and database stay
 * readable when they appear alone (the journal's errors name them): they are what an operator fixes.
 */
export const databaseUrlSecrets = (input: string): ReadonlyArray<string> => {
  const text = input.trim()
  let url: URL
  try {
    url = new URL(text)
  } catch {
    return [text]
  }
  // A user name alone is no secret, and `r3mes:` would blank ordinary log text.
  const credentials = url.password !== "" ? [`${url.username}:${url.password}`] : []
  const passwords = [url.password, decoded(url.password)].filter((p) => p.length >= passwordLength)
  return [...new Set([text, url.href, ...credentials, ...passwords])]
}

/**
 * The secret values of a configuration: the private key, the admin token, the fleet's database URL
 * (`databaseUrlSecrets`), and the secret parts of the RPC URL and of a Kubo RPC URL (`urlSecrets`), when set.
 */
export const secretsOf = (
  config: Pick<MinerConfig, "privateKey" | "adminToken" | "rpcUrl" | "ipfsApi" | "fleetDatabaseUrl">
): ReadonlyArray<SecretInput> => [
  config.privateKey,
  config.adminToken,
  ...Option.match(config.fleetDatabaseUrl, {
    onNone: () => [],
    onSome: (url) => databaseUrlSecrets(Redacted.value(url))
  }),
  ...Option.match(config.rpcUrl, { onNone: () => [], onSome: urlSecrets }),
  ...urlSecrets(config.ipfsApi)
]

/**
 * Builds the last pass every outgoing text (log line, HTTP body, span event) goes through: each occurrence of a
 * configured secret becomes `<redacted>` (a masked secret: its `shownAs`). A 32-byte hex secret (a private key)
 * matches in any letter case, with or without `0x`, even inside a longer hex string; other secrets match exactly,
 * raw or JSON-escaped. Empty secrets are ignored (they would match everywhere).
 */
export const makeRedactor = (secrets: ReadonlyArray<SecretInput>): (text: string) => string => {
  const hexKeys = new Set<string>()
  const exact = new Map<string, string>()
  for (const input of secrets) {
    const masked = plain(input)
    if (masked === undefined || masked.secret.length === 0) continue
    const hex = hexKey.exec(masked.secret)
    if (hex !== null) {
      hexKeys.add(`(?:0x)?${hex[1]!.toLowerCase()}`)
    } else {
      const escape = (text: string) => JSON.stringify(text).slice(1, -1)
      // A plain secret wins over the same text masked: hiding more is the safe side.
      if (exact.get(masked.secret) !== REDACTED) exact.set(masked.secret, masked.shownAs)
      if (exact.get(escape(masked.secret)) !== REDACTED) exact.set(escape(masked.secret), escape(masked.shownAs))
    }
  }
  const passes: Array<(text: string) => string> = []
  if (hexKeys.size > 0) {
    const pattern = new RegExp([...hexKeys].join("|"), "gi")
    passes.push((text) => text.replace(pattern, REDACTED))
  }
  if (exact.size > 0) {
    // Longest first, so a secret that contains another one (an URL and its path) is replaced whole.
    const sorted = [...exact.keys()].sort((a, b) => b.length - a.length).map(escapeRegExp)
    const pattern = new RegExp(sorted.join("|"), "g")
    passes.push((text) => text.replace(pattern, (match) => exact.get(match) ?? REDACTED))
  }
  return (text) => passes.reduce((out, pass) => pass(out), text)
}
