"""Test app for TLS: /whoami answers the scheme and the client certificate's common name."""

import tornado.web


class WhoAmI(tornado.web.RequestHandler):
    def get(self) -> None:
        cert = self.request.get_ssl_certificate()
        subject = dict(item for rdn in cert["subject"] for item in rdn) if cert else {}
        self.write({"protocol": self.request.protocol, "client": subject.get("commonName")})


application = tornado.web.Application([(r"/whoami", WhoAmI)])
