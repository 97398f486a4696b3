/** Plain-text building blocks of the CLI's tables and summaries (status, stats, journal). */

/** Aligned columns under a header; `right` names the columns aligned right (numbers). The last column is not padded. */
export const table = (
  header: ReadonlyArray<string>,
  rows: ReadonlyArray<ReadonlyArray<string>>,
  options: { readonly indent?: string; readonly right?: ReadonlyArray<number> } = {}
): string => {
  const all = [header, ...rows]
  const widths = header.map((_, column) => Math.max(...all.map((row) => (row[column] ?? "").length)))
  const last = header.length - 1
  return all.map((row) =>
    (options.indent ?? "") + row.map((cell, column) =>
      options.right?.includes(column) === true
        ? cell.padStart(widths[column]!)
        : column === last
        ? cell
        : cell.padEnd(widths[column]!)
    ).join("  ").trimEnd()
  ).join("\n")
}

/** 42s, 3m 12s, 2h 05m, 3d 4h. */
export const formatAge = (seconds: number): string => {
  const s = Math.max(0, Math.floor(seconds))
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`
  if (s < 86_400) return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`
  return `${Math.floor(s / 86_400)}d ${Math.floor((s % 86_400) / 3600)}h`
}

/** 850 ms, 3.2 s, then as an age. */
export const formatMs = (ms: number | null | undefined): string => {
  if (ms === null || ms === undefined) return "-"
  if (ms < 1000) return `${Math.round(ms)} ms`
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`
  return formatAge(ms / 1000)
}

/** `2025-01-02 03:04:05Z`: to the second, still UTC. */
export const formatTime = (iso: string): string => iso.replace("T", " ").replace(/\.\d+Z$/, "Z")

export const shorten = (text: string, max: number): string => (text.length <= max ? text : `${text.slice(0, max - 1)}…`)

/** `0x1234abcd…ef01`: enough to recognise a hash in a table; the full one is in `status TX_ID`. */
export const abbreviate = (hash: string): string => (hash.length <= 16 ? hash : `${hash.slice(0, 10)}…${hash.slice(-4)}`)

export const orDash = (value: string | number | null | undefined): string =>
  value === null || value === undefined || value === "" ? "-" : String(value)
