// --peer tap|switch|null -> the provisioner.
import { PlaceholderProvisioner, type PeerProvisioner } from "./peer-provisioner.ts";
import { TapProvisioner } from "./peer-provisioner-tap.ts";

export function createPeerProvisioner(peer: "tap" | "switch" | "null", opts: { bridge: string | null }): PeerProvisioner {
  return peer === "tap" ? new TapProvisioner(opts) : new PlaceholderProvisioner(peer);
}
