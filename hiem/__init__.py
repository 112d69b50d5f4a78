"""hiem: an NHIN HIEM v2.0 publish/subscribe notification broker.

HIEM v2.0 profiles OASIS WS-BaseNotification 1.3 (Subscribe, Unsubscribe, Notify over SOAP) and
WS-Topics 1.3 topic expressions. See README.md for the big picture and docs/ for the details.
"""

__version__ = "0.1.0"
