name = "centos5-lvm"
uuid = "e6958213-c80f-4b13-b060-145ec8277ce1"
maxmem = 512
memory = 512
vcpus = 1
bootloader = "/usr/bin/pygrub"
on_poweroff = "destroy"
on_reboot = "restart"
on_crash = "restart"
vfb = [ ]
disk = [ "tap:aio:/var/lib/xen/images/centos5-lvm.img,xvda,w" ]
vif = [ "mac=00:16:3e:13:5a:9e,bridge=xenbr0,script=vif-bridge" ]
