/**
 * How a leak detector recognises a secret however something re-encoded it: as is, hex, percent-encoded and
 * base64/base64url at each of the three alignments (the characters determined by the secret alone), so a secret
 * hidden in Basic credentials or a hex dump is still found.
 */
export function encodedForms(secret: string): string[] {
  const bytes = Buffer.from(secret);
  const forms = new Set([
    secret,
    bytes.toString('hex'),
    bytes.toString('hex').toUpperCase(),
    encodeURIComponent(secret),
  ]);
  for (let pad = 0; pad < 3; pad++) {
    const encoded = Buffer.concat([Buffer.alloc(pad, 0x41), bytes]).toString('base64');
    const core = encoded.slice(Math.ceil((8 * pad) / 6), Math.floor((8 * (pad + bytes.length)) / 6));
    forms.add(core);
    forms.add(core.replaceAll('+', '-').replaceAll('/', '_'));
  }
  return [...forms];
}

export function containsSecret(haystack: Buffer | string, secret: string): boolean {
  const text = typeof haystack === 'string' ? haystack : haystack.toString('latin1');
  return encodedForms(secret).some((form) => text.includes(form));
}
