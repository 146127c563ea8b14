import { Duplex } from 'node:stream';

/**
 * The socket as a plain Duplex that starts with `first`, the bytes already read while sniffing (TLS or not). A
 * TLSSocket or Node's HTTP parser handed the socket itself would read its native handle directly, missing the
 * sniffed chunk and bypassing whatever records the bytes.
 */
export function streamFrom(socket: Duplex, first: Buffer): Duplex {
  const duplex = new Duplex({
    read() {
      socket.resume();
    },
    write(chunk: Buffer, _encoding, callback) {
      socket.write(chunk, callback);
    },
    final(callback) {
      socket.end();
      callback();
    },
    destroy(err, callback) {
      socket.destroy();
      callback(err);
    },
  });
  socket.pause();
  if (first.length > 0) duplex.push(first);
  socket.on('data', (chunk: Buffer) => {
    if (!duplex.push(chunk)) socket.pause();
  });
  socket.on('end', () => duplex.push(null));
  socket.on('close', () => duplex.destroy());
  return duplex;
}
