/** USB identity of the Intel Neural Compute Stick 2 (Movidius Myriad X), from ncs2-facts.md. */
export const MOVIDIUS_VENDOR_ID = 0x03e7;
/** Myriad X before its firmware is booted. */
export const MYRIAD_X_UNBOOTED = 0x2485;
/** The id a stick re-enumerates with once the runtime has booted its firmware. */
export const MYRIAD_X_BOOTED = 0xf63b;
/** Listed by OpenVINO's udev rule (97-myriad-usbboot.rules) with the two above. */
export const MYRIAD_LEGACY = 0x2150;

export type Firmware = 'unbooted' | 'booted';

/** Which NCS2 state a vendor/product pair means, or undefined when it is not a stick. */
export function stickFirmware(vendorId: number, productId: number): Firmware | undefined {
  if (vendorId !== MOVIDIUS_VENDOR_ID) return undefined;
  if (productId === MYRIAD_X_UNBOOTED || productId === MYRIAD_LEGACY) return 'unbooted';
  if (productId === MYRIAD_X_BOOTED) return 'booted';
  return undefined;
}

export function hex4(n: number): string {
  return n.toString(16).padStart(4, '0');
}
