"""A middleware that marks the answers it saw (tests/enrollment/test_handler.py)."""


class MarkerMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response["X-Marker"] = "ran"
        return response
