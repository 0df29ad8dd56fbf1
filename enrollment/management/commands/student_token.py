"""`manage.py student_token ID`: a token that opens this student's pages (Authorization: Bearer <token>)."""
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from enrollment.access import issue_token
from enrollment.models import Student


class Command(BaseCommand):
    help = "Print a token that opens one student's home and learning pages until it expires."

    def add_arguments(self, parser):
        parser.add_argument("student_id", type=int)

    def handle(self, *args, student_id, **options):
        if not Student.objects.filter(pk=student_id).exists():
            raise CommandError(f"no student {student_id}")
        self.stdout.write(issue_token(student_id))
        self.stderr.write(f"valid for {settings.STUDENT_TOKEN_MAX_AGE_SECONDS} s")
