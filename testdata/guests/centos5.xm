name = "centos5"
uuid = "d3be9eef-0225-4f68-9da5-00175703cb90"
maxmem = 512
memory = 512
vcpus = 1
bootloader = "/usr/bin/pygrub"
on_poweroff = "destroy"
on_reboot = "restart"
on_crash = "restart"
vfb = [ ]
disk = [ "tap:aio:/var/lib/xen/images/centos5.img,xvda,w" ]
vif = [ "mac=00:16:3e:26:5a:4b,bridge=xenbr0,script=vif-bridge" ]
