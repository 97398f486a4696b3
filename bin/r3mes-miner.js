#!/usr/bin/env node
// The sources are TypeScript that Node >= 24 runs directly (type stripping). An older `node` first on the PATH
// would fail with "Unknown file extension .ts": say what to do instead.
const major = Number(process.versions.node.split(".")[0])
if (major < 24) {
  console.error(
    `r3mes-miner needs Node.js 24 or newer, but this is ${process.version}.\n` +
      "hint: run it through npm (`npm start`, `npx r3mes-miner …`), which uses the Node 24 that `npm install` " +
      "placed in node_modules/.bin, or install Node 24"
  )
  process.exit(1)
}
await import("../src/program.ts")
