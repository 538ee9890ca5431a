// Package signalchanneljs embeds the JavaScript client's source files so
// that a Go server can serve them to browsers.
package signalchanneljs

import "embed"

// FS holds the client's ES modules and TypeScript declarations under src/;
// src/index.js is the entry point and imports the others by relative path.
// Serve fs.Sub(FS, "src") under one URL prefix, with http.FileServerFS.
//
//go:embed src/*.js src/*.d.ts
var FS embed.FS
