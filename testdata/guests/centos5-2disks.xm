name = "centos5-2disks"
uuid = "66e53084-557c-426b-aa56-57ec3bfc0d58"
maxmem = 512
memory = 512
vcpus = 1
bootloader = "/usr/bin/pygrub"
on_poweroff = "destroy"
on_reboot = "restart"
on_crash = "restart"
vfb = [ ]
disk = [ "tap:aio:/var/lib/xen/images/centos5-2disks.img,xvda,w", "tap:aio:/var/lib/xen/images/centos5-2disks-data.img,xvdb,w" ]
vif = [ "mac=00:16:3e:06:45:a0,bridge=xenbr0,script=vif-bridge" ]
