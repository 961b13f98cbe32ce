// caas fixture: answers every request with a line naming the instance.
const http = require("http");
const isNumber = require("is-number");

const port = Number(process.env.PORT || 5000);
const instance = process.env.CAAS_INSTANCE || "unknown";

const server = http.createServer((req, res) => {
  const checked = isNumber(String(port)) ? "port is a number" : "port is not a number";
  res.writeHead(200, { "Content-Type": "text/plain; charset=utf-8" });
  res.end(`nodejs app works: ${instance} (${checked}, node ${process.version})\n`);
});

server.listen(port, () => console.log(`nodejs fixture listening on ${port} as ${instance}`));
process.on("SIGTERM", () => server.close(() => process.exit(0)));
