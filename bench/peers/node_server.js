// Node peer: res.on('close') tells an interruption (response not ended) from
// a completion; an interruption clears the timer.  Usage: node node_server.js PORT
'use strict';
const http = require('http');

const counts = { pending: 0, completed: 0, interrupted: 0 };
const HEADERS = { 'Content-Type': 'text/html; charset=utf-8', 'Content-Length': '5' };

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://127.0.0.1');
  if (url.pathname === '/stats') {
    const body = JSON.stringify(counts);
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
    return;
  }
  const delay = Number(url.searchParams.get('delay') ?? '0') * 1000;
  counts.pending++;
  const timer = setTimeout(() => {
    res.writeHead(200, HEADERS);
    res.end('hello');
  }, delay);
  res.on('close', () => {
    counts.pending--;
    if (res.writableEnded) {
      counts.completed++;
    } else {
      clearTimeout(timer);
      counts.interrupted++;
    }
  });
});

server.listen({ port: Number(process.argv[2]), host: '127.0.0.1', backlog: 4096 });
