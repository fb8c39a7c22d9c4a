// Event channel device ABI (linux uapi xen/evtchn.h).
export const IOCTL_EVTCHN_BIND_VIRQ = 0x00044500;
export const IOCTL_EVTCHN_BIND_INTERDOMAIN = 0x00084501;
export const IOCTL_EVTCHN_BIND_UNBOUND_PORT = 0x00044502;
export const IOCTL_EVTCHN_UNBIND = 0x00044503;
export const IOCTL_EVTCHN_NOTIFY = 0x00044504;
export const IOCTL_EVTCHN_RESET = 0x00004505;
export const IOCTL_EVTCHN_RESTRICT_DOMID = 0x00024506;
/** ioctl_evtchn_bind_interdomain: remote_domain u32 @0, remote_port u32 @4. */
export const EvtchnBindInterdomain = { remoteDomain: 0, remotePort: 4, size: 8 } as const;
/** Ports are u32 values read from and written back to the device. */
export const EVTCHN_PORT_SIZE = 4;
