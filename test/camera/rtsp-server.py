"""A real RTSP server for the camera tests: GStreamer's RTSP server (Debian packages
gir1.2-gst-rtsp-server-1.0, python3-gi, gstreamer1.0-plugins-good) serving a moving test pattern
as RTP/JPEG at 320x240, 10 fps, on rtsp://127.0.0.1:PORT/test. Prints "ready" once listening."""
import sys

import gi

gi.require_version('Gst', '1.0')
gi.require_version('GstRtspServer', '1.0')
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

Gst.init(None)
server = GstRtspServer.RTSPServer()
server.set_address('127.0.0.1')
server.set_service(sys.argv[1])
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch('( videotestsrc is-live=true pattern=ball ! video/x-raw,format=I420,width=320,height=240,framerate=10/1 ! jpegenc ! rtpjpegpay name=pay0 pt=26 )')
factory.set_shared(True)
server.get_mount_points().add_factory('/test', factory)
if server.attach(None) == 0:
    sys.exit('could not listen on port ' + sys.argv[1])
print('ready', flush=True)
GLib.MainLoop().run()
