// The console's build: one page, hashed assets under /assets/, nothing fetched from
// outside the origin (the world outline is bundled from world-atlas).
import { defineConfig } from "vitest/config";

export default defineConfig({
  esbuild: { jsx: "automatic", jsxImportSource: "preact" },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    sourcemap: false,
    assetsInlineLimit: 0,
    chunkSizeWarningLimit: 400,
  },
  server: {
    // `npm run dev` against a local `vantage api` (VANTAGE_API, default :8080).
    proxy: { "/api": process.env.VANTAGE_API ?? "http://127.0.0.1:8080" },
  },
  test: { include: ["src/**/*.test.ts"], environment: "node" },
});
