// The classification is pure and shared with `airlock policy check`; it lives in protocol/.
export { forbiddenAddressReason } from '../../protocol/address-guard.js';
